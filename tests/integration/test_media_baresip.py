"""Media acceptance with baresip 1.0.0 as the caller: echo per codec, SDES-SRTP, RFC 4733 DTMF.

baresip sends a sine tone (``ausine``) and its ``sndfile`` filter records what it sent and what
it heard; the tests look for the tone's frequency in what came back from sipua's echo (numpy
FFT), and read sipua's own account of the call in the session's event log.

baresip 1.0.0's srtp module offers only AES_CM_128_HMAC_SHA1_80 (its offer suite is fixed in the
source; any suite it supports is accepted in an offer it answers). So AES_CM_128_HMAC_SHA1_32 is
proved with baresip answering: the test, as a third-party call controller (RFC 3725 flow I),
asks sipua for an offer (INVITE without SDP), hands it to baresip, and returns baresip's answer
in the ACK; the media then runs between baresip and sipua directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .baresip import (
    Baresip,
    BaresipConfig,
    active,
    dominant_frequency,
    media_env,
    read_wav,
    rms,
    session_events,
    tone_share,
    wait_events,
)
from .conftest import assert_clean_stderr
from .service import Service, start_service
from .sipclient import SipClient

pytestmark = pytest.mark.peer

ALL_CODECS = ("g711", "g722", "opus")
ECHO_SECONDS = 2.0  # of echoed audio baresip must hear before hanging up


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module, with an RTP port range of its own."""
    svc = start_service(tmp_path_factory.mktemp("media") / "data", env=media_env())
    try:
        yield svc
    finally:
        svc.stop()
    assert_clean_stderr(svc)


def sip_session(svc: Service, *, codecs: list[str] | None = None, srtp: dict | None = None) -> dict:
    provider: dict = {"type": "sip", "transport": "udp"}
    if codecs is not None:
        provider["codecs"] = codecs
    if srtp is not None:
        provider["srtp"] = srtp
    return svc.create_session(provider=provider)


def uri_of(svc: Service, session: dict) -> str:
    return f"sip:session_{session['id']}@127.0.0.1:{svc.ports['udp']}"


def assert_hears_tone(path: Path, hz: float, seconds: float) -> None:
    """``path`` holds at least ``seconds`` of a clean ``hz`` tone (after its leading silence)."""
    samples, rate = read_wav(path)
    tone = active(samples, rate)
    assert len(tone) >= seconds * rate, (
        f"{path.name}: {len(tone) / rate:.2f} s of audio above the noise floor "
        f"(of {len(samples) / rate:.2f} s; RMS {rms(samples):.0f})"
    )
    found = dominant_frequency(tone, rate)
    assert found == pytest.approx(hz, rel=0.01), f"{path.name}: strongest frequency {found} Hz"
    share = tone_share(tone, rate, hz)
    assert share > 0.9, f"{path.name}: only {share:.0%} of the energy is near {hz} Hz"


def echo_call(
    svc: Service,
    session: dict,
    directory: Path,
    config: BaresipConfig,
    *,
    reinvites: int = 0,
    uri: str | None = None,
) -> tuple[Baresip, dict]:
    """baresip calls the session, hears ECHO_SECONDS of echo (sending ``reinvites`` re-INVITEs
    on the way), hangs up; returns (baresip, the disconnected event)."""
    with Baresip(directory, config) as phone:
        established = phone.dial(uri or uri_of(svc, session))
        assert established["type"] == "CALL_ESTABLISHED", phone.control.events
        phone.wait_received_audio(0.5)
        for n in range(reinvites):  # the same SDP again, SRTP keys included
            phone.control.command("reinvite", token=f"reinvite-{n}")
            assert phone.control.wait_response(f"reinvite-{n}")["ok"], phone.control.events
        phone.wait_received_audio(ECHO_SECONDS + 0.5)
        phone.hangup()
    [gone] = wait_events(svc, session["id"], "session.provider.disconnected")
    if reinvites:
        assert phone.log().count("INVITE sip:") == 1 + reinvites
    return phone, gone


def connected_event(svc: Service, session: dict) -> dict:
    [event] = [
        e for e in session_events(svc, session["id"]) if e["type"] == "session.provider.connected"
    ]
    return event


def assert_echoed(phone: Baresip, gone: dict, hz: float) -> None:
    sent, received = phone.recordings()
    assert_hears_tone(sent, hz, ECHO_SECONDS)  # the test's own premise: baresip sent the tone
    assert_hears_tone(received, hz, ECHO_SECONDS)  # and heard it back
    quality = gone["data"]["quality"]
    # sipua relayed what it received (the relay sends nothing of its own)
    assert quality["packets_received"] >= ECHO_SECONDS * 50
    assert quality["packets_sent"] >= quality["packets_received"] - 5, quality
    assert quality["packets_lost"] == 0 and quality["loss_percent"] == 0, quality


# -- 1. echo with each codec ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "tone"),
    [("PCMU", 440), ("PCMA", 1000), ("G722", 700), ("opus", 1200)],
)
def test_echo_with_each_codec(media: Service, tmp_path: Path, codec: str, tone: int) -> None:
    # baresip offers every codec it has; the session allows one, so sipua must pick it.
    session = sip_session(media, codecs=[codec])
    config = BaresipConfig(codec_modules=ALL_CODECS, tone_hz=tone, record=True)
    phone, gone = echo_call(media, session, tmp_path / "baresip", config)
    offer = re.search(r"m=audio \d+ RTP/AVP ([\d ]+)", phone.log())
    assert offer is not None and len(offer.group(1).split()) >= 5, phone.log()[-3000:]
    connected = connected_event(media, session)
    assert connected["data"]["codec"].lower() == codec.lower()
    assert connected["data"]["secure"] is False
    assert gone["data"]["quality"]["codec"].lower() == codec.lower()
    assert_echoed(phone, gone, tone)


@pytest.mark.parametrize(
    ("transport", "codec", "srtp"),
    [("tcp", "G722", "off"), ("tls", "opus", "required")],
    ids=["tcp-g722", "tls-srtp-opus"],
)
def test_echo_over_tcp_and_tls(
    media: Service, tmp_path: Path, transport: str, codec: str, srtp: str
) -> None:
    session = media.create_session(
        provider={
            "type": "sip",
            "transport": transport,
            "codecs": [codec],
            "srtp": {"enabled": srtp},
        }
    )
    config = BaresipConfig(
        codec_modules=ALL_CODECS,
        tone_hz=1300,
        record=True,
        transport=transport,
        ca_file=media.data_dir / "tls" / "sipua-cert.pem",
        srtp=srtp != "off",
        account_params=";mediaenc=srtp-mand" if srtp != "off" else "",
    )
    uri = f"sip:session_{session['id']}@127.0.0.1:{media.ports[transport]};transport={transport}"
    phone, gone = echo_call(media, session, tmp_path / "baresip", config, uri=uri)
    connected = connected_event(media, session)
    assert connected["data"]["transport"] == transport
    assert connected["data"]["codec"].lower() == codec.lower()
    assert connected["data"]["secure"] is (srtp != "off")
    assert_echoed(phone, gone, 1300)


# -- 2. SDES-SRTP ---------------------------------------------------------------------------

SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
SHA1_32 = "AES_CM_128_HMAC_SHA1_32"


@pytest.mark.parametrize(
    ("policy", "mediaenc", "profile"),
    [("required", "srtp-mand", "RTP/SAVP"), ("optional", "srtp", "RTP/AVP")],
    ids=["required-savp", "optional-best-effort-avp"],
)
def test_srtp_echo_aes_cm_128_hmac_sha1_80(
    media: Service, tmp_path: Path, policy: str, mediaenc: str, profile: str
) -> None:
    session = sip_session(
        media, codecs=["PCMU"], srtp={"enabled": policy, "crypto_suites": [SHA1_80]}
    )
    config = BaresipConfig(
        tone_hz=900, record=True, srtp=True, account_params=f";mediaenc={mediaenc}"
    )
    phone, gone = echo_call(media, session, tmp_path / "baresip", config, reinvites=2)
    log = phone.log()
    assert f"SRTP is Enabled (cryptosuite={SHA1_80})" in log, log[-3000:]
    answer = log[log.index("SIP/2.0 200 OK") :]
    assert re.search(rf"m=audio \d+ {profile} ", answer), answer[:2000]
    assert f"a=crypto:1 {SHA1_80} inline:" in answer
    # the first answer and the answer to each re-INVITE carry our key
    keys = re.findall(rf"SIP/2\.0 200 OK(?:.*\r?\n)*?a=crypto:1 {SHA1_80} inline:(\S+)", log)
    assert len(keys) == 3, keys
    connected = connected_event(media, session)
    assert connected["data"]["secure"] is True
    assert gone["data"]["quality"]["srtp"] is True
    assert_echoed(phone, gone, 900)  # the tone all along, through the re-INVITEs


def test_plain_rtp_offer_to_a_required_session_is_refused_with_488(
    media: Service, tmp_path: Path
) -> None:
    session = sip_session(media, srtp={"enabled": "required"})
    with Baresip(tmp_path / "baresip", BaresipConfig(srtp=True)) as phone:  # mediaenc unset
        closed = phone.dial(uri_of(media, session))
    assert closed["type"] == "CALL_CLOSED" and "488" in closed["param"], closed
    [failed] = wait_events(media, session["id"], "session.provider.failed")
    assert failed["data"]["status_code"] == 488
    assert not [e for e in session_events(media, session["id"]) if "connected" in e["type"]]
    assert re.search(r"SIP/2\.0 488 .*\r?\n(.*\r?\n)*?Warning: 30\d sipua", phone.log())


def test_srtp_aes_cm_128_hmac_sha1_32(media: Service, tmp_path: Path) -> None:
    session = sip_session(
        media, codecs=["PCMU"], srtp={"enabled": "required", "crypto_suites": [SHA1_32]}
    )
    config = BaresipConfig(
        tone_hz=1100,
        record=True,
        srtp=True,
        account_params=";mediaenc=srtp-mand",
        answermode="auto",
    )
    with Baresip(tmp_path / "baresip", config) as phone:
        # baresip cannot offer this suite: sipua refuses its offer (only SHA1_80) with 488.
        refused = phone.dial(uri_of(media, session))
        assert refused["type"] == "CALL_CLOSED" and "488" in refused["param"], refused
        assert f"a=crypto:1 {SHA1_80} inline:" in phone.log()
        assert SHA1_32 not in phone.log().split("SIP/2.0 488")[0]

        # Third-party call control: sipua offers, baresip answers.
        with (
            SipClient("udp", ("127.0.0.1", media.ports["udp"])) as to_sipua,
            SipClient("udp", ("127.0.0.1", phone.sip_port)) as to_phone,
        ):
            leg_a = to_sipua.new_call(uri_of(media, session))
            to_sipua.send(leg_a.invite(body=b""))  # no SDP: sipua's offer comes in the 200
            ok_a = to_sipua.final_response()
            assert ok_a.status == 200, ok_a.raw
            offer = ok_a.body
            assert b"RTP/SAVP" in offer and f"a=crypto:1 {SHA1_32} inline:".encode() in offer
            assert SHA1_80.encode() not in offer

            leg_b = to_phone.new_call(f"sip:tester@127.0.0.1:{phone.sip_port}")
            to_phone.send(leg_b.invite(body=offer))
            ok_b = to_phone.final_response(timeout=10)
            assert ok_b.status == 200, ok_b.raw
            to_phone.send(leg_b.ack(ok_b))
            assert f"a=crypto:1 {SHA1_32} inline:".encode() in ok_b.body, ok_b.body
            to_sipua.send(leg_a.ack(ok_a, body=ok_b.body))  # the answer to sipua's offer

            phone.wait_received_audio(ECHO_SECONDS + 0.5)
            to_phone.send(leg_b.bye())
            assert to_phone.final_response("BYE").status == 200
            to_sipua.send(leg_a.bye())
            assert to_sipua.final_response("BYE").status == 200
    assert f"SRTP is Enabled (cryptosuite={SHA1_32})" in phone.log()
    [gone] = wait_events(media, session["id"], "session.provider.disconnected")
    connected = connected_event(media, session)
    assert connected["data"]["secure"] is True and connected["data"]["codec"] == "PCMU"
    assert gone["data"]["quality"]["srtp"] is True
    assert_echoed(phone, gone, 1100)


# -- 3. DTMF --------------------------------------------------------------------------------


def test_rfc4733_dtmf_from_baresip_becomes_session_events_in_order(
    media: Service, tmp_path: Path
) -> None:
    digits = "159#*0"
    # The server's default codecs (opus first): baresip's telephone-event is at 8000 Hz only,
    # so sipua picks a codec with that clock (RFC 4733 §2.1) and DTMF works.
    session = sip_session(media)
    with Baresip(tmp_path / "baresip", BaresipConfig(codec_modules=ALL_CODECS)) as phone:
        established = phone.dial(uri_of(media, session))
        assert established["type"] == "CALL_ESTABLISHED", phone.control.events
        for digit in digits:
            phone.send_dtmf(digit)
        presses = wait_events(media, session["id"], "session.dtmf", count=len(digits))
        phone.hangup()
    assert "".join(e["data"]["digit"] for e in presses) == digits
    assert {e["data"]["source"] for e in presses} == {"rfc4733"}
    assert all(e["data"]["duration_ms"] > 0 for e in presses)
    connected = connected_event(media, session)
    assert connected["data"]["codec"] in ("G722", "PCMU", "PCMA")
    assert presses[0]["data"]["participant_id"] == connected["data"]["participant_id"]
    assert len(re.findall(r"send DTMF digit: ", phone.log())) == len(digits)
