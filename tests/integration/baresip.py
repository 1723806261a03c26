"""Drive baresip (1.0.0, headless) from a test: its own config directory, ctrl_tcp, no sound card.

A :class:`Baresip` runs one baresip process with a config written for the test:

- SIP and control on loopback ports of its own (``sip_listen``, ``ctrl_tcp_listen``);
- audio from the ``ausine`` module (a sine of the given frequency; ausine only does 48 kHz
  stereo, baresip resamples for the codec) and to the ``aubridge`` player, which nobody reads;
- optionally the ``sndfile`` audio filter, which writes for every call two WAV files in
  ``snd_path``: ``dump-<time>-enc.wav`` (what baresip sent, before encoding) and
  ``dump-<time>-dec.wav`` (what it received, after decoding): what the caller heard;
- the ``srtp`` media encryption module (``mediaenc=srtp-mand`` on the account makes it offer
  RTP/SAVP with SDES keys only).

Commands go over ctrl_tcp as netstring-framed JSON (``{"command", "params", "token"}``); its
responses and events (``CALL_ESTABLISHED``, ``CALL_CLOSED`` …) come back the same way.

The module also holds what the media acceptance tests share (``test_media_*.py``): RTP port
ranges of their own for each service, the session's event log, and audio checks on WAV files
(numpy FFT).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .service import Service, require_tool

MODULE_PATH = "/usr/lib/baresip/modules"
RTP_RANGE = 200  # ports per service or baresip: 100 calls
_RTP_LOW, _RTP_HIGH = 20000, 32000  # below Linux's ephemeral ports (32768-60999)


def rtp_port_range() -> tuple[int, int]:
    """An even-based range of its own for one media endpoint's RTP ports.

    Parallel runs may pick the same range; that only costs a retry: sipua's allocator and
    baresip skip ports that are taken.
    """
    low = random.randrange(_RTP_LOW, _RTP_HIGH - RTP_RANGE, 2)
    return low, low + RTP_RANGE - 1


def media_env(**extra: str) -> dict[str, str]:
    """``sipua serve`` environment with an RTP port range of its own."""
    low, high = rtp_port_range()
    return {"SIPUA_MEDIA__RTP_PORT_MIN": str(low), "SIPUA_MEDIA__RTP_PORT_MAX": str(high), **extra}


def session_events(svc: Service, session_id: str) -> list[dict]:
    """Every event of the session's log, oldest first (all pages)."""
    out: list[dict] = []
    after = None
    with svc.client() as api:
        for _ in range(50):  # 5000 events at most
            params: dict = {"limit": 100}
            if after:
                params["after"] = after
            r = api.get(f"/v1/sessions/{session_id}/events", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            out += page["data"]
            after = page["next_after"]
            if not after:
                break
    return out


def wait_events(
    svc: Service, session_id: str, kind: str, count: int = 1, timeout: float = 10.0
) -> list[dict]:
    """The session's events of type ``kind`` once there are ``count`` of them.

    The log is in another process and has no push channel here: poll it, bounded.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in session_events(svc, session_id) if e["type"] == kind]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, (kind, count, session_events(svc, session_id))
            return found
        time.sleep(0.1)


_FIXED_LOW, _FIXED_HIGH = 61000, 65500  # above Linux's ephemeral ports (32768-60999)


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(span: int = 1) -> int:
    """``span`` consecutive ports nobody holds on 127.0.0.1, TCP and UDP; the first one.

    A peer that must be told a number gets one above the kernel's ephemeral range, so no
    connect() or bind(0) elsewhere can take it between this check and the peer's bind.
    baresip needs two: it listens for SIP/TLS on its ``sip_listen`` port + 1.
    """
    for _ in range(200):
        port = random.randrange(_FIXED_LOW, _FIXED_HIGH - span)
        if all(_bindable(port + i) for i in range(span)):
            return port
    raise RuntimeError(f"no {span} free consecutive ports in {_FIXED_LOW}-{_FIXED_HIGH}")


class BaresipControl:
    """baresip's ctrl_tcp module: netstring-framed JSON commands, responses and events."""

    def __init__(self, port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # baresip is still starting; nothing to wait on but the port
        self.buffer = b""
        self.events: list[dict] = []

    def close(self) -> None:
        self.sock.close()

    def command(self, command: str, params: str = "", token: str = "t") -> None:
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def next(self, deadline: float) -> dict:
        while True:
            head, sep, rest = self.buffer.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                n = int(head)
                self.buffer = rest[n + 1 :]
                msg = json.loads(rest[:n])
                self.events.append(msg)
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"baresip said nothing more; so far: {self.events}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"baresip closed its control socket; events: {self.events}")
            self.buffer += chunk

    def wait_event(self, *types: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(deadline)
            if msg.get("event") and msg.get("type") in types:
                return msg

    def wait_response(self, token: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(deadline)
            if msg.get("response") and msg.get("token") == token:
                return msg


@dataclass
class BaresipConfig:
    """What a test may choose of baresip's configuration (everything else is fixed)."""

    codec_modules: tuple[str, ...] = ("g711",)
    tone_hz: int = 440
    account_params: str = ""  # e.g. ";audio_codecs=PCMA;mediaenc=srtp-mand"
    answermode: str = "manual"  # "auto": answer incoming calls at once
    transport: str = "udp"  # the account's transport (the one it dials with)
    ca_file: Path | None = None
    record: bool = False  # load sndfile: WAVs of what is sent and received
    srtp: bool = False  # load the srtp module
    extra: list[str] = field(default_factory=list)


class Baresip:
    """One headless baresip process; use as a context manager (it is stopped on exit)."""

    def __init__(self, directory: Path, config: BaresipConfig | None = None) -> None:
        self.binary = require_tool("baresip")
        self.directory = directory
        self.config = config or BaresipConfig()
        self.sip_port = free_port(span=2)  # + 1: its SIP/TLS listener
        self.ctrl_port = free_port()
        self.rtp_ports = rtp_port_range()
        self.snd_path = directory / "sound"
        self.log_path = directory / "baresip.log"
        self.proc: subprocess.Popen | None = None
        self.ctrl: BaresipControl | None = None

    # -- configuration ----------------------------------------------------------------------

    def write_config(self) -> None:
        c = self.config
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",  # loopback only
            "call_local_timeout 20",
            "audio_player aubridge,nil",  # no sound card: nobody reads the player
            f"audio_source ausine,{c.tone_hz}",
            "ausrc_srate 48000",  # ausine only makes 48 kHz stereo
            "ausrc_channels 2",
            "audio_buffer 20-160",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            f"module_path {MODULE_PATH}",
            *(f"module {name}.so" for name in c.codec_modules),
            "module ausine.so",
            "module aubridge.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        if c.ca_file is not None:
            lines.append(f"sip_cafile {c.ca_file}")
        if c.record:
            self.snd_path.mkdir(exist_ok=True)
            lines += ["module sndfile.so", f"snd_path {self.snd_path}"]
        if c.srtp:
            lines.append("module srtp.so")
        lines += c.extra
        (self.directory / "config").write_text("\n".join(lines) + "\n")
        transport = "" if c.transport == "udp" else f";transport={c.transport}"
        (self.directory / "accounts").write_text(
            f"<sip:tester@127.0.0.1{transport}>;regint=0;answermode={c.answermode}"
            f"{c.account_params}\n"
        )

    # -- process --------------------------------------------------------------------------------

    def __enter__(self) -> Baresip:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.write_config()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-f", str(self.directory), "-s"],  # -s: SIP trace in the log
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.ctrl = BaresipControl(self.ctrl_port, self.proc)
        except OSError as e:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"baresip did not open its control port {self.ctrl_port} "
                f"(exit status {self.proc.poll()}); its log ends:\n{tail}"
            ) from e
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.ctrl is not None:
            self.ctrl.close()
            self.ctrl = None
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- calls ------------------------------------------------------------------------------------

    @property
    def control(self) -> BaresipControl:
        assert self.ctrl is not None, "baresip is not running"
        return self.ctrl

    def dial(self, uri: str, timeout: float = 15.0) -> dict:
        """Call ``uri``; the CALL_ESTABLISHED or CALL_CLOSED event that ends the attempt."""
        self.control.command("dial", uri, token="dial")
        return self.control.wait_event("CALL_ESTABLISHED", "CALL_CLOSED", timeout=timeout)

    def send_dtmf(self, digit: str) -> None:
        """One key press on the current call (menu's ``sndcode``: RFC 4733 when negotiated)."""
        self.control.command("sndcode", digit, token=f"dtmf-{digit}")
        self.control.wait_response(f"dtmf-{digit}")

    def hangup(self, timeout: float = 10.0) -> dict:
        self.control.command("hangup", token="hangup")
        return self.control.wait_event("CALL_CLOSED", timeout=timeout)

    def wait_received_audio(self, seconds: float, timeout: float = 15.0) -> None:
        """Wait until the sndfile filter has written ``seconds`` of audio baresip received."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.snd_path.glob("*-dec.wav"))
            if files and wav_seconds_written(files[-1]) >= seconds:
                return
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise TimeoutError(
                    f"baresip did not receive {seconds} s of audio: "
                    f"{[(f.name, wav_seconds_written(f)) for f in files]}"
                )
            time.sleep(0.05)  # a file growing in another process: nothing to await

    def recordings(self) -> tuple[Path, Path]:
        """The (sent, received) WAVs the sndfile filter wrote for the one call of this process."""
        sent = sorted(self.snd_path.glob("*-enc.wav"))
        received = sorted(self.snd_path.glob("*-dec.wav"))
        assert len(sent) == 1 and len(received) == 1, sorted(self.snd_path.iterdir())
        return sent[0], received[0]


# -- audio checks -------------------------------------------------------------------------------


def wav_seconds_written(path: Path) -> float:
    """Seconds of audio in a WAV file still being written (its header's sizes are not final)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0.0
    fmt = data.find(b"fmt ")
    chunk = data.find(b"data", fmt)
    if fmt < 0 or chunk < 0 or len(data) < fmt + 24:
        return 0.0
    channels, rate = struct.unpack_from("<HI", data, fmt + 10)
    bits = struct.unpack_from("<H", data, fmt + 22)[0]
    frame = channels * bits // 8
    return (len(data) - chunk - 8) / (rate * frame) if rate and frame else 0.0


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float samples (channels averaged) and the sample rate of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, f"{path}: {w.getsampwidth() * 8}-bit samples"
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    if channels > 1:
        data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return data, rate


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency (Hz) of the strongest FFT bin, DC excluded (Hann window)."""
    assert len(samples) >= rate // 10, f"only {len(samples)} samples"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[:2] = 0.0
    return float(np.argmax(spectrum)) * rate / len(samples)


def tone_share(samples: np.ndarray, rate: int, hz: float, width: float = 30.0) -> float:
    """The share of the signal's energy (DC excluded) within ``hz ± width``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    spectrum[freqs < 20] = 0.0
    total = spectrum.sum()
    if total == 0:
        return 0.0
    return float(spectrum[np.abs(freqs - hz) <= width].sum() / total)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def active(samples: np.ndarray, rate: int, threshold: float = 300.0) -> np.ndarray:
    """The samples from the first to the last 20 ms block whose RMS passes ``threshold``."""
    block = rate // 50
    n = len(samples) // block
    if n == 0:
        return samples[:0]
    levels = np.sqrt(np.mean(samples[: n * block].reshape(n, block) ** 2, axis=1))
    loud = np.nonzero(levels > threshold)[0]
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] * block : (loud[-1] + 1) * block]
