"""SIP messages out of a capture file (pcap or pcapng), for ``sipua check`` and ``sipua replay``.

scapy reads the file. UDP payloads that start like a SIP message are datagrams; TCP
payloads are put back in sequence order per direction and framed as a stream. RTP, RTCP,
STUN and everything else is left out, unless :func:`read_capture_with_media` is asked to
keep the other UDP datagrams too (``sipua replay`` plays the caller's RTP from them). TLS
cannot be read without its keys and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

PCAP_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",  # pcapng section header block
)


def is_capture(data: bytes) -> bool:
    return data[:4] in PCAP_MAGICS


def _looks_like_sip(payload: bytes) -> bool:
    """A status line, or a request line naming a SIP version (not HTTP: SSDP shares UDP)."""
    line = payload.lstrip(b"\r\n")[:512].split(b"\n", 1)[0].rstrip(b"\r")
    return line.startswith(b"SIP/") or line.upper().endswith(b" SIP/2.0")


@dataclass(frozen=True, slots=True)
class CapturedDatagram:
    frame: int  # 1-based packet number, as Wireshark counts
    src: str
    dst: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CapturedStream:
    src: str
    dst: str
    first_frame: int
    data: bytes
    # (offset in ``data``, frame) where each segment's octets begin, so that a message
    # framed out of the stream can be put in capture order with the UDP datagrams.
    segment_frames: tuple[tuple[int, int], ...] = ()

    def frame_at(self, offset: int) -> int:
        """The frame that carried the octet at ``offset`` of ``data``."""
        frame = self.first_frame
        for start, segment_frame in self.segment_frames:
            if start > offset:
                break
            frame = segment_frame
        return frame


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """A UDP datagram that is not SIP (RTP, RTCP, STUN …), with its capture time in seconds."""

    frame: int
    time: float
    src: str
    dst: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Capture:
    datagrams: list[CapturedDatagram]
    streams: list[CapturedStream]
    other_udp: list[CapturedPacket]


def read_capture(path: str) -> tuple[list[CapturedDatagram], list[CapturedStream]]:
    """The SIP datagrams (UDP) and the SIP byte streams (TCP, one per direction) of a capture."""
    capture = _scan(path, keep_udp=False)
    return capture.datagrams, capture.streams


def read_capture_with_media(path: str) -> Capture:
    """As :func:`read_capture`, plus every other UDP datagram with its time.

    One pass over the file: scapy reads a few thousand packets a second, and a replay
    needs the SIP and the RTP of the same capture.
    """
    return _scan(path, keep_udp=True)


def _scan(path: str, keep_udp: bool) -> Capture:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    datagrams: list[CapturedDatagram] = []
    other_udp: list[CapturedPacket] = []
    segments: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    fragments: dict[tuple, dict[int, bytes]] = {}  # IPv4 (src, dst, id, proto) -> offset: data
    with PcapReader(path) as reader:
        for frame, packet in enumerate(reader, 1):
            ip4 = packet.getlayer(IP)
            if ip4 is not None and (ip4.flags.MF or ip4.frag):
                # A large INVITE over UDP is often fragmented at the IP layer: put it together.
                key = (ip4.src, ip4.dst, ip4.id, ip4.proto)
                pieces = fragments.setdefault(key, {})
                pieces[ip4.frag * 8] = bytes(ip4.payload)
                if not ip4.flags.MF:
                    pieces[-1] = b""  # the last fragment came
                whole = _reassemble(pieces)
                if whole is not None and ip4.proto == 17 and len(whole) >= 8:
                    del fragments[key]
                    sport, dport = (
                        int.from_bytes(whole[0:2], "big"),
                        int.from_bytes(whole[2:4], "big"),
                    )
                    payload = whole[8:]
                    if _looks_like_sip(payload):
                        src, dst = f"{ip4.src}:{sport}", f"{ip4.dst}:{dport}"
                        datagrams.append(CapturedDatagram(frame, src, dst, payload))
                continue
            ip = ip4 or packet.getlayer(IPv6)
            if ip is None:
                continue
            udp = packet.getlayer(UDP)
            tcp = packet.getlayer(TCP)
            if udp is not None:
                payload = bytes(udp.payload)
                src, dst = f"{ip.src}:{udp.sport}", f"{ip.dst}:{udp.dport}"
                if _looks_like_sip(payload):
                    datagrams.append(CapturedDatagram(frame, src, dst, payload))
                elif keep_udp:
                    other_udp.append(CapturedPacket(frame, float(packet.time), src, dst, payload))
            elif tcp is not None:
                payload = bytes(tcp.payload)
                if payload:
                    key = (f"{ip.src}:{tcp.sport}", f"{ip.dst}:{tcp.dport}")
                    segments.setdefault(key, []).append((int(tcp.seq), frame, payload))
    streams: list[CapturedStream] = []
    for (src, dst), parts in segments.items():
        parts.sort()
        data = bytearray()
        seen: set[int] = set()
        starts: list[tuple[int, int]] = []
        for seq, frame, payload in parts:
            if seq in seen:
                continue  # a retransmitted segment
            seen.add(seq)
            starts.append((len(data), frame))
            data += payload
        if _looks_like_sip(bytes(data[:64])):
            first = min(p[1] for p in parts)
            streams.append(CapturedStream(src, dst, first, bytes(data), tuple(starts)))
    streams.sort(key=lambda s: s.first_frame)
    return Capture(datagrams, streams, other_udp)


def _reassemble(pieces: dict[int, bytes]) -> bytes | None:
    """The IP payload once every fragment from offset 0 to the last one is there."""
    if -1 not in pieces:
        return None
    data = bytearray()
    for offset in sorted(k for k in pieces if k >= 0):
        if offset != len(data):
            return None  # a hole (or an overlap): not complete
        data += pieces[offset]
    return bytes(data)
