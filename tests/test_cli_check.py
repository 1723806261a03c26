"""``sipua check``: verdicts on captured SIP messages, text and JSON output, exit status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sipua.cli import app

DATA = Path(__file__).resolve().parent / "data" / "sip"
RFC4475 = DATA / "rfc4475"
STREAM = DATA / "stream"

runner = CliRunner()


def run(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["check", *args])
    return result.exit_code, result.output.splitlines()


def test_accepted_request() -> None:
    path = RFC4475 / "wsinv.dat"
    code, lines = run(str(path))
    assert code == 0
    assert lines == [f"{path}: accepted REQUEST INVITE call-id=wsinv.ndaksdj@192.0.2.1"]


def test_accepted_response() -> None:
    path = RFC4475 / "unreason.dat"
    code, lines = run(str(path))
    assert code == 0
    assert lines == [f"{path}: accepted RESPONSE 200 call-id=unreason.1234ksdfak3j2erwedfsASdf"]


def test_rejected_request_prints_the_response_it_would_get() -> None:
    path = RFC4475 / "bext01.dat"
    code, lines = run(str(path))
    assert code == 1
    assert lines == [
        f"{path}: rejected 420 Bad Extension: unsupported extensions required: "
        "nothingSupportsThis, nothingSupportsThisEither"
    ]
    code, lines = run(str(RFC4475 / "unkscm.dat"))
    assert code == 1 and " rejected 416 Unsupported URI Scheme: " in lines[0]


def test_discarded_response() -> None:
    path = RFC4475 / "scalarlg.dat"
    code, lines = run(str(path))
    assert code == 1
    assert lines == [
        f"{path}: rejected (discarded): CSeq 9292394834772304023312 is larger than 4294967295"
    ]


def test_several_files_one_line_each_exit_1_if_any_rejected() -> None:
    good = [RFC4475 / "wsinv.dat", RFC4475 / "esc01.dat"]
    code, lines = run(*map(str, good))
    assert code == 0 and len(lines) == 2
    code, lines = run(*map(str, good), str(RFC4475 / "ncl.dat"))
    assert code == 1 and len(lines) == 3
    assert lines[2].startswith(
        f"{RFC4475 / 'ncl.dat'}: rejected 400 Bad Request: bad Content-Length"
    )


def test_json_lines() -> None:
    files = [RFC4475 / "wsinv.dat", RFC4475 / "bext01.dat", RFC4475 / "scalarlg.dat"]
    code, lines = run("--json", *map(str, files))
    assert code == 1
    records = [json.loads(line) for line in lines]
    assert [r["file"] for r in records] == list(map(str, files))
    assert records[0] == {
        "file": str(files[0]),
        "verdict": "accepted",
        "kind": "request",
        "method": "INVITE",
        "call_id": "wsinv.ndaksdj@192.0.2.1",
    }
    assert records[1]["verdict"] == "rejected" and records[1]["status"] == 420
    assert records[1]["headers"] == {
        "Unsupported": "nothingSupportsThis, nothingSupportsThisEither"
    }
    assert records[2]["kind"] == "response" and records[2]["discarded"] is True


def test_missing_or_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _ = run(str(tmp_path / "nope.sip"))
    assert code == 2
    code, _ = run(str(tmp_path))  # a directory
    assert code == 2
    code, _ = run()  # no file at all
    assert code == 2
    # nothing is printed for the good file when another is missing: usage errors come first
    result = runner.invoke(app, ["check", str(RFC4475 / "wsinv.dat"), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "accepted" not in result.output


def test_stream_mode(tmp_path: Path) -> None:
    path = STREAM / "generic-227-messages.txt"
    code, lines = run("--stream", str(path))
    assert code == 1  # 24 messages without Content-Length, and some the UAS would refuse
    assert len(lines) == 227
    assert lines[0].startswith(f"{path}#1: ")
    assert lines[-1].startswith(f"{path}#227: ")
    missing = [line for line in lines if "missing Content-Length" in line]
    assert len(missing) == 24

    joined = tmp_path / "two.sip"
    joined.write_bytes(
        (RFC4475 / "wsinv.dat").read_bytes() + b"\r\n\r\n" + (RFC4475 / "esc01.dat").read_bytes()
    )
    code, lines = run("--stream", str(joined))
    assert code == 0
    assert [line.split(": ", 1)[1].split(" call-id")[0] for line in lines] == [
        "accepted REQUEST INVITE",
        "accepted REQUEST INVITE",
    ]
    code, lines = run("--stream", "--json", str(joined))
    assert [json.loads(line)["message"] for line in lines] == [1, 2]


def test_stream_mode_framing_faults() -> None:
    code, lines = run("--stream", str(RFC4475 / "ncl.dat"))
    assert code == 1 and lines[0].endswith("bad Content-Length '-999'; connection closed")
    code, lines = run("--stream", str(RFC4475 / "clerr.dat"))
    assert code == 1 and "incomplete message at the end of the stream" in lines[0]


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sip"
    empty.write_bytes(b"")
    code, lines = run(str(empty))
    assert code == 1 and "rejected 400 Bad Request: empty message" in lines[0]
    code, lines = run("--stream", str(empty))
    assert code == 1 and "no SIP message" in lines[0]


def test_help_documents_json_and_exit_status() -> None:
    result = runner.invoke(app, ["check", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "JSON Lines" in text and "Exit status" in text and "--stream" in text


def _sipua() -> list[str]:
    exe = shutil.which("sipua")
    return [exe] if exe else [sys.executable, "-m", "sipua"]


def test_subprocess_on_every_torture_file() -> None:
    """The installed command agrees with check_message on all RFC 4475 files."""
    from sipua.sip.checks import check_message

    files = sorted(p for p in RFC4475.iterdir() if p.suffix == ".dat")
    proc = subprocess.run(
        [*_sipua(), "check", "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == len(files)
    for path, record in zip(files, records, strict=True):
        verdict = check_message(path.read_bytes())
        assert record["file"] == str(path)
        assert record["verdict"] == ("accepted" if verdict.accepted else "rejected")
        assert record.get("status") == verdict.status


@pytest.mark.parametrize("name, code", [("wsinv.dat", 0), ("badinv01.dat", 1)])
def test_subprocess_exit_status_and_text(name: str, code: int) -> None:
    proc = subprocess.run(
        [*_sipua(), "check", str(RFC4475 / name)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == code
    assert proc.stdout.startswith(f"{RFC4475 / name}: {'accepted' if code == 0 else 'rejected'}")


# -- captures (pcap) ------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
UDP_CAPTURE = REPO / "pcaps" / "voipshark-sip-srtp-sdes-call.pcap"
TCP_CAPTURE = Path(__file__).resolve().parent / "data" / "pcap" / "heplify-sip-over-tcp-call.pcap"


def test_capture_over_udp_gives_the_sip_packets_tshark_sees() -> None:
    from integration.service import require_tool

    tshark = require_tool("tshark")
    listed = subprocess.run(
        [tshark, "-r", str(UDP_CAPTURE), "-Y", "sip", "-T", "fields"]
        + ["-e", "frame.number", "-e", "sip.Method", "-e", "sip.Status-Code"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    expected = [
        (int(frame), method or status)
        for frame, method, status in (row.split("\t") for row in listed if row.strip())
    ]
    code, lines = run("--json", str(UDP_CAPTURE))
    records = [json.loads(line) for line in lines]
    assert code == 0 and {r["verdict"] for r in records} == {"accepted"}
    got = [(r["message"], r.get("method") or str(r["status"])) for r in records]
    # SSDP (HTTP over UDP) and RTP are left out; the fragmented INVITE (frames 58-59) counts once.
    assert got == expected


def test_capture_over_tcp_is_framed_per_direction() -> None:
    code, lines = run(str(TCP_CAPTURE))
    assert code == 0
    caller = "10.33.6.100:64802->10.33.6.101:5060"
    callee = "10.33.6.101:5060->10.33.6.100:64802"
    assert [line.split(": accepted ")[0].split("#tcp ")[1] for line in lines] == [
        f"{caller}#1",
        f"{caller}#2",
        f"{caller}#3",
        f"{callee}#1",
        f"{callee}#2",
        f"{callee}#3",
        f"{callee}#4",
    ]
    kinds = [line.split(": accepted ")[1].split(" call-id=")[0] for line in lines]
    assert kinds == [
        "REQUEST INVITE",
        "REQUEST ACK",
        "RESPONSE 200",
        "RESPONSE 100",
        "RESPONSE 180",
        "RESPONSE 200",
        "REQUEST BYE",
    ]


def test_capture_without_sip_and_a_damaged_capture(tmp_path: Path) -> None:
    rtp_only = Path(__file__).resolve().parent / "data" / "media_it" / "pcap" / "g711a.pcap"
    result = runner.invoke(app, ["check", str(rtp_only)])
    assert result.exit_code == 1
    assert "no SIP message in the capture" in result.output
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 7)
    result = runner.invoke(app, ["check", str(damaged)])
    assert result.exit_code == 2
    assert "cannot read capture" in result.output
