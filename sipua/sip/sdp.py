"""SDP session descriptions (RFC 8866, formerly RFC 4566): parse and serialize.

A description is kept as the peer wrote it: every line type, every attribute in
its order (unknown ones too), so that ``parse_sdp(d.to_bytes())`` gives ``d``
back. The meaning of the attributes an RTP audio endpoint needs (``rtpmap``,
``fmtp``, ``ptime``, direction, ``rtcp``, ``rtcp-mux``, ``crypto`` …) is read on
demand by the accessors of :class:`MediaDescription` and
:class:`SessionDescription`; a malformed *attribute value* is skipped by those
accessors instead of failing the whole description, because real PBXes and test
tools send things like ``a=rtpmap: PCMA/8000`` on a static payload type and the
call still works. A malformed *line* (no ``x=`` shape, bad ``o=``/``c=``/``m=``
fields, an unknown type letter, control characters) raises :class:`SdpError`;
that is the only exception :func:`parse_sdp` raises.

Line endings: we write CRLF (RFC 8866 §5) and accept LF alone; trailing
whitespace and empty lines are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ParseError
from .rtp_params import Codec

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtcpAttribute",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 §6 Table 4: audio payload types with a static mapping (name, clock, channels).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),  # RFC 3551 §4.5.2: RTP clock 8000 although it samples at 16 kHz
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

_MAX_SDP_LENGTH = 65536  # larger than any UDP datagram; a longer body is hostile or broken
_UINT = re.compile(r"[0-9]{1,20}")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 §9 token
_NON_WS = re.compile(r"[\x21-\x7e\x80-\U0010ffff]+")
_BAD_CHARS = re.compile(r"[\x00\r]")
# RFC 8866 §5: session-level lines, in the order we write them.
_SESSION_TYPES = frozenset("vosiuepcbtrzka")
_MEDIA_TYPES = frozenset("icbka")


class SdpError(ParseError, ValueError):
    """A session description that cannot be parsed.

    ``detail`` says what is wrong. A UAS answers an INVITE whose body has this
    fault with ``status``/``reason`` (400: the body is malformed syntax,
    RFC 3261 §21.4.1), and may add ``warning`` (RFC 3261 §20.43, code 399).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, 400)

    @property
    def warning(self) -> str:
        text = ("Malformed SDP: " + self.detail).replace("\\", "\\\\").replace('"', '\\"')
        return f'399 sipua "{text}"'

    def __repr__(self) -> str:
        return f"SdpError({self.detail!r})"


def _uint(text: str, what: str, maximum: int | None = None) -> int:
    # Python's int() accepts "+1", " 1", "1_0" and non-ASCII digits; SDP does not.
    if _UINT.fullmatch(text) is None:
        raise SdpError(f"{what} is not a decimal number: {text!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise SdpError(f"{what} out of range: {value}")
    return value


def _field(text: str, what: str) -> str:
    if _NON_WS.fullmatch(text) is None:
        raise SdpError(f"bad {what}: {text!r}")
    return text


# --- line values ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (§5.2)."""

    username: str
    session_id: int
    session_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"o= needs 6 fields, got {len(parts)}: {value!r}")
        user, sess_id, version, nettype, addrtype, address = parts
        return cls(
            username=_field(user, "o= username"),
            session_id=_uint(sess_id, "o= sess-id"),
            session_version=_uint(version, "o= sess-version"),
            nettype=_field(nettype, "o= nettype"),
            addrtype=_field(addrtype, "o= addrtype"),
            address=_field(address, "o= address"),
        )

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (§5.7).

    For multicast, ``IP4 224.2.1.1/127/3`` gives ``ttl`` 127 and ``count`` 3;
    ``IP6 ff15::101/3`` gives ``count`` 3. The address may also be a FQDN.
    """

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    count: int | None = None

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"c= needs 3 fields, got {len(parts)}: {value!r}")
        nettype, addrtype, spec = parts
        _field(nettype, "c= nettype")
        _field(addrtype, "c= addrtype")
        address, *suffix = spec.split("/")
        if not address:
            raise SdpError(f"c= has an empty address: {value!r}")
        ttl = count = None
        if addrtype.upper() == "IP4" and suffix:
            if len(suffix) > 2:
                raise SdpError(f"c= IP4 address has too many '/' parts: {spec!r}")
            ttl = _uint(suffix[0], "c= TTL", 255)
            if len(suffix) == 2:
                count = _uint(suffix[1], "c= address count")
        elif suffix:
            if len(suffix) > 1:
                raise SdpError(f"c= address has too many '/' parts: {spec!r}")
            count = _uint(suffix[0], "c= address count")
        return cls(address=address, addrtype=addrtype, nettype=nettype, ttl=ttl, count=count)

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` (or ``::``): the RFC 2543 way to put a call on hold (RFC 3264 §8.4)."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        spec = self.address
        if self.ttl is not None:
            spec += f"/{self.ttl}"
        if self.count is not None:
            spec += f"/{self.count}"
        return f"{self.nettype} {self.addrtype} {spec}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (§5.8), e.g. ``AS:84`` or ``TIAS:64000``."""

    bwtype: str
    bandwidth: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        bwtype, sep, amount = value.partition(":")
        if not sep or _TOKEN.fullmatch(bwtype) is None:
            raise SdpError(f"b= is not <bwtype>:<bandwidth>: {value!r}")
        return cls(bwtype, _uint(amount, "b= bandwidth"))

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` repeat lines, kept as written (§5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Timing:
        parts = value.split()
        if len(parts) != 2:
            raise SdpError(f"t= needs 2 fields: {value!r}")
        return cls(_uint(parts[0], "t= start"), _uint(parts[1], "t= stop"))


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (a flag) or ``a=<name>:<value>`` (§5.13)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        if _TOKEN.fullmatch(name) is None:
            raise SdpError(f"bad attribute name in a={text!r}")
        return cls(name, value if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (§6.6)."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        parts = value.split(None, 1)
        if len(parts) != 2:
            raise SdpError(f"a=rtpmap needs '<pt> <encoding>': {value!r}")
        pt = _uint(parts[0], "rtpmap payload type", 127)
        pieces = parts[1].strip().split("/")
        if len(pieces) not in (2, 3) or _TOKEN.fullmatch(pieces[0]) is None:
            raise SdpError(f"a=rtpmap encoding is not <name>/<rate>[/<channels>]: {value!r}")
        rate = _uint(pieces[1], "rtpmap clock rate")
        channels = _uint(pieces[2], "rtpmap channels") if len(pieces) == 3 else None
        if rate == 0 or channels == 0:
            raise SdpError(f"a=rtpmap with a zero rate or channel count: {value!r}")
        return cls(pt, pieces[0], rate, channels)

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding_name}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute:
        parts = value.split()
        if len(parts) not in (1, 4):
            raise SdpError(f"a=rtcp is not '<port> [<nettype> <addrtype> <address>]': {value!r}")
        port = _uint(parts[0], "a=rtcp port", 65535)
        conn = Connection.parse(" ".join(parts[1:])) if len(parts) == 4 else None
        return cls(port, conn)

    def __str__(self) -> str:
        return str(self.port) if self.connection is None else f"{self.port} {self.connection}"


def parse_fmtp_params(text: str) -> tuple[tuple[str, str], ...]:
    """``k1=v1;k2=v2`` as ordered pairs; a bare item (``0-15``) becomes ``(item, "")``."""
    pairs = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def format_fmtp_params(params: tuple[tuple[str, str], ...]) -> str:
    return ";".join(f"{k}={v}" if v else k for k, v in params)


# --- media and session ------------------------------------------------------------


class _AttributeMixin:
    __slots__ = ()
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>:<value>``, or None (also for a flag)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Every ``a=<name>:<value>`` value, in order (``a=crypto``, ``a=rtpmap`` …)."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def direction(self) -> str | None:
        """The direction attribute written here, or None (RFC 8866 §6.7; the last one wins)."""
        found = None
        for attr in self.attributes:
            if attr.name in DIRECTIONS and attr.value is None:
                found = attr.name
        return found


@dataclass(frozen=True, slots=True)
class MediaDescription(_AttributeMixin):
    """One ``m=`` section (§5.14) and the ``i= c= b= k= a=`` lines under it."""

    media: str  # audio, video, application, …
    port: int
    proto: str  # RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF, UDP/TLS/RTP/SAVP, …
    formats: tuple[str, ...]  # RTP payload type numbers for the RTP protos
    port_count: int | None = None
    title: str | None = None  # i=
    connections: tuple[Connection, ...] = ()  # several only for layered multicast
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None  # k= (obsolete, kept as written)
    attributes: tuple[Attribute, ...] = ()

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError(f"m= needs '<media> <port> <proto> <fmt> ...': {value!r}")
        media, port_spec, proto, *formats = parts
        if _TOKEN.fullmatch(media) is None:
            raise SdpError(f"bad m= media type: {media!r}")
        port_text, sep, count_text = port_spec.partition("/")
        port = _uint(port_text, "m= port", 65535)
        count = _uint(count_text, "m= port count") if sep else None
        if count == 0:
            raise SdpError(f"m= port count is zero: {value!r}")
        if re.fullmatch(r"[A-Za-z0-9/._+\-]+", proto) is None:
            raise SdpError(f"bad m= proto: {proto!r}")
        return cls(media=media, port=port, port_count=count, proto=proto, formats=tuple(formats))

    def m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join((self.media, port, self.proto, *self.formats))

    # -- attribute accessors (lenient: a malformed value reads as absent) --

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def is_secure_proto(self) -> bool:
        """RTP/SAVP or RTP/SAVPF: SRTP keyed by SDES (RFC 4568, RFC 5124)."""
        return self.proto.upper() in ("RTP/SAVP", "RTP/SAVPF")

    def rtpmaps(self) -> dict[int, RtpMap]:
        """Valid ``a=rtpmap`` lines by payload type (the first one wins)."""
        found: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            try:
                rtpmap = RtpMap.parse(value)
            except SdpError:
                continue
            found.setdefault(rtpmap.payload_type, rtpmap)
        return found

    def fmtp(self, payload_type: int) -> str | None:
        """The parameter text of ``a=fmtp:<payload_type> <params>``, or None."""
        for value in self.attribute_values("fmtp"):
            pt, *params = value.split(None, 1)
            if pt == str(payload_type):
                return params[0].strip() if params else ""
        return None

    def rtp_codecs(self) -> tuple[Codec, ...]:
        """The payload formats of this m-line that we can name, in ``m=`` order.

        A format is named by its ``a=rtpmap``, or by the RFC 3551 static table
        when it has none (``m=audio 4000 RTP/AVP 0 8`` alone is PCMU and PCMA).
        Formats that are not 0..127, or dynamic without a valid rtpmap, are left out.
        """
        rtpmaps = self.rtpmaps()
        codecs = []
        for fmt in self.formats:
            if _UINT.fullmatch(fmt) is None or int(fmt) > 127:
                continue
            pt = int(fmt)
            if pt in rtpmaps:
                rtpmap = rtpmaps[pt]
                name, rate, channels = (
                    rtpmap.encoding_name,
                    rtpmap.clock_rate,
                    rtpmap.channels or 1,
                )
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            else:
                continue
            fmtp = self.fmtp(pt)
            codecs.append(
                Codec(
                    name=name,
                    payload_type=pt,
                    clock_rate=rate,
                    channels=channels,
                    fmtp=parse_fmtp_params(fmtp) if fmtp else (),
                )
            )
        return tuple(codecs)

    def _positive_int_attribute(self, name: str) -> int | None:
        value = self.attribute(name)
        if value is None:
            return None
        value = value.strip()
        # RFC 8866 §6.4 allows a real number; an integral one ("20.0") reads as 20.
        match = re.fullmatch(r"([0-9]{1,9})(?:\.0*)?", value)
        if match is None or int(match.group(1)) == 0:
            return None
        return int(match.group(1))

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in ms (RFC 8866 §6.4), None if absent or not a whole number."""
        return self._positive_int_attribute("ptime")

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in ms (RFC 8866 §6.5)."""
        return self._positive_int_attribute("maxptime")

    @property
    def rtcp(self) -> RtcpAttribute | None:
        """``a=rtcp`` (RFC 3605), None if absent or malformed."""
        value = self.attribute("rtcp")
        if value is None:
            return None
        try:
            return RtcpAttribute.parse(value)
        except SdpError:
            return None

    @property
    def rtcp_mux(self) -> bool:
        """``a=rtcp-mux`` (RFC 5761 §5.1.1)."""
        return self.has_attribute("rtcp-mux")

    @property
    def crypto_lines(self) -> list[str]:
        """Values of the ``a=crypto`` lines, in offer order (see :mod:`sipua.sip.sdes`)."""
        return self.attribute_values("crypto")

    def lines(self) -> list[str]:
        out = ["m=" + self.m_line()]
        if self.title is not None:
            out.append("i=" + self.title)
        out += ["c=" + str(c) for c in self.connections]
        out += ["b=" + str(b) for b in self.bandwidths]
        if self.key is not None:
            out.append("k=" + self.key)
        out += ["a=" + str(a) for a in self.attributes]
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription(_AttributeMixin):
    """A whole SDP body (RFC 8866 §5)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    media: tuple[MediaDescription, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    bandwidths: tuple[Bandwidth, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    information: str | None = None  # i=
    uri: str | None = None  # u=
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    zone: str | None = None  # z=
    key: str | None = None  # k=
    version: int = 0

    def effective_connection(self, media: MediaDescription | int) -> Connection | None:
        """The connection data that applies to ``media`` (an m-section or its index).

        A media-level ``c=`` overrides the session-level one (RFC 8866 §5.7); with
        several media-level ones (layered multicast) the first is the base.
        """
        if isinstance(media, int):
            media = self.media[media]
        if media.connections:
            return media.connections[0]
        return self.connection

    def effective_direction(self, media: MediaDescription | int) -> str:
        """The direction of ``media``: its own attribute, else the session's, else sendrecv."""
        if isinstance(media, int):
            media = self.media[media]
        return media.direction or self.direction or "sendrecv"

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.information is not None:
            out.append("i=" + self.information)
        if self.uri is not None:
            out.append("u=" + self.uri)
        out += ["e=" + e for e in self.emails]
        out += ["p=" + p for p in self.phones]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += ["b=" + str(b) for b in self.bandwidths]
        for timing in self.timings or (Timing(),):
            out.append(f"t={timing.start} {timing.stop}")
            out += ["r=" + r for r in timing.repeats]
        if self.zone is not None:
            out.append("z=" + self.zone)
        if self.key is not None:
            out.append("k=" + self.key)
        out += ["a=" + str(a) for a in self.attributes]
        for media in self.media:
            out += media.lines()
        return out

    def to_str(self) -> str:
        return "".join(line + "\r\n" for line in self.lines())

    def to_bytes(self) -> bytes:
        return self.to_str().encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.to_bytes()


# --- parser -----------------------------------------------------------------------


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SdpError(f"SDP must be bytes or str, not {type(data).__name__}")
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 8866 §5: text fields are UTF-8 unless a=charset says otherwise; old
        # phones write ISO-8859-1 in s=/i=. Latin-1 decodes any octet string.
        return raw.decode("latin-1")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises :class:`SdpError` (and nothing else) when malformed."""
    text = _decode(data)
    if len(text) > _MAX_SDP_LENGTH:
        raise SdpError(f"SDP longer than {_MAX_SDP_LENGTH} characters")
    lines: list[tuple[int, str, str]] = []
    for number, raw_line in enumerate(text.split("\n"), 1):
        line = raw_line.rstrip(" \t\r")
        if not line:
            continue
        if _BAD_CHARS.search(line):
            raise SdpError(f"line {number} contains a NUL or a bare CR")
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {number} is not <type>=<value>: {line[:40]!r}")
        lines.append((number, line[0], line[2:]))
    if not lines:
        raise SdpError("empty SDP")
    number, kind, value = lines[0]
    if kind != "v":
        raise SdpError("SDP does not start with v=")
    if value != "0":
        raise SdpError(f"unsupported SDP version v={value}")
    return _Parser(lines[1:]).session()


_M_FIELDS = ("i", "c", "b", "k", "a")


class _Parser:
    """Groups the lines after ``v=`` into the session part and its m-sections."""

    def __init__(self, lines: list[tuple[int, str, str]]) -> None:
        self.lines = lines
        self.origin: Origin | None = None
        self.single: dict[str, object] = {}  # session-level s i u c z k
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.bandwidths: list[Bandwidth] = []
        self.timings: list[Timing] = []
        self.attributes: list[Attribute] = []
        self.sections: list[tuple[MediaDescription, dict[str, list]]] = []

    def session(self) -> SessionDescription:
        for number, kind, value in self.lines:
            try:
                if kind == "m":
                    fields: dict[str, list] = {k: [] for k in _M_FIELDS}
                    self.sections.append((MediaDescription.parse_m_line(value), fields))
                elif self.sections:
                    self.media_line(kind, value, self.sections[-1][1])
                else:
                    self.session_line(kind, value)
            except SdpError as exc:
                raise SdpError(f"line {number} ({kind}=): {exc.detail}") from None
        if self.origin is None:
            raise SdpError("no o= line")
        single = self.single
        # s= and t= are mandatory (RFC 8866 §5) but some PBXes leave them out; such a
        # body reads as if it had "s=-" and "t=0 0", and is written back with them.
        return SessionDescription(
            origin=self.origin,
            session_name=single.get("s", "-"),  # type: ignore[arg-type]
            information=single.get("i"),  # type: ignore[arg-type]
            uri=single.get("u"),  # type: ignore[arg-type]
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=single.get("c"),  # type: ignore[arg-type]
            bandwidths=tuple(self.bandwidths),
            timings=tuple(self.timings) or (Timing(),),
            zone=single.get("z"),  # type: ignore[arg-type]
            key=single.get("k"),  # type: ignore[arg-type]
            attributes=tuple(self.attributes),
            media=tuple(
                MediaDescription(
                    media=m.media,
                    port=m.port,
                    port_count=m.port_count,
                    proto=m.proto,
                    formats=m.formats,
                    title=f["i"][0] if f["i"] else None,
                    connections=tuple(f["c"]),
                    bandwidths=tuple(f["b"]),
                    key=f["k"][0] if f["k"] else None,
                    attributes=tuple(f["a"]),
                )
                for m, f in self.sections
            ),
        )

    def session_line(self, kind: str, value: str) -> None:
        if kind not in _SESSION_TYPES:
            raise SdpError(f"unknown line type {kind}=")
        if kind == "v":
            raise SdpError("more than one v=")
        if kind == "o":
            if self.origin is not None:
                raise SdpError("more than one o=")
            self.origin = Origin.parse(value)
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "b":
            self.bandwidths.append(Bandwidth.parse(value))
        elif kind == "t":
            self.timings.append(Timing.parse(value))
        elif kind == "r":
            if not self.timings:
                raise SdpError("r= before any t=")
            last = self.timings[-1]
            self.timings[-1] = Timing(last.start, last.stop, (*last.repeats, value))
        elif kind == "a":
            self.attributes.append(Attribute.parse(value))
        else:  # s i u c z k: at most once each
            if kind in self.single:
                raise SdpError(f"more than one session-level {kind}=")
            self.single[kind] = Connection.parse(value) if kind == "c" else value

    @staticmethod
    def media_line(kind: str, value: str, fields: dict[str, list]) -> None:
        if kind not in _MEDIA_TYPES:
            raise SdpError(f"{kind}= is not allowed in a media section")
        if kind in ("i", "k") and fields[kind]:
            raise SdpError(f"more than one {kind}= in a media section")
        if kind == "c":
            fields["c"].append(Connection.parse(value))
        elif kind == "b":
            fields["b"].append(Bandwidth.parse(value))
        elif kind == "a":
            fields["a"].append(Attribute.parse(value))
        else:
            fields[kind].append(value)
