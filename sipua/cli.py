"""The ``sipua`` command line: ``sipua serve``, ``sipua check`` and ``sipua replay``.

Each command is registered on ``app``: ``serve`` by :mod:`sipua.service.cli`,
``check`` and ``replay`` here. A new command is one more ``@app.command`` function or one more
``register_*(app)`` call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sipua.pcapread import is_capture, read_capture
from sipua.service.cli import register as register_serve
from sipua.sip.checks import Verdict, check_message, judge, judge_error
from sipua.sip.errors import ParseError
from sipua.sip.framer import (
    NEED_DATA,
    KeepAliveReceived,
    MalformedMessage,
    MessageFramed,
    StreamFramer,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sipua: an open-source SIP edge for voice sessions.",
)
register_serve(app)


@app.callback()
def _root() -> None:
    """sipua: an open-source SIP edge for real-time voice sessions."""


# -- sipua check ----------------------------------------------------------------

EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def _line(label: str, verdict: Verdict) -> str:
    if verdict.accepted:
        if verdict.kind == "response":
            return f"{label}: accepted RESPONSE {verdict.status} call-id={verdict.call_id}"
        return f"{label}: accepted REQUEST {verdict.method} call-id={verdict.call_id}"
    detail = verdict.detail or ""
    if verdict.kind == "response":
        return f"{label}: rejected (discarded): {detail.removeprefix('discarded: ')}"
    return f"{label}: rejected {verdict.status} {verdict.reason}: {detail}"


def _record(path: str, verdict: Verdict, index: int | None) -> dict[str, object]:
    record: dict[str, object] = {"file": path}
    if index is not None:
        record["message"] = index
    record.update(verdict.as_dict())
    if not verdict.accepted and verdict.kind == "response":
        record["discarded"] = True
    return record


def _stream_verdicts(data: bytes) -> list[Verdict]:
    """Frame ``data`` as a TCP/TLS byte stream and judge every message in it."""
    framer = StreamFramer()
    verdicts: list[Verdict] = []
    framer.receive_data(data)
    for _ in range(len(data) + 1):  # at most one event per octet
        start = len(data) - framer.buffered  # where the next event's octets begin
        try:
            event = framer.next_event()
        except ParseError as e:
            # The framing is lost: a transport closes the connection here (RFC 3261 §18.3).
            error = ParseError(f"{e.detail}; connection closed", e.status, e.reason)
            verdicts.append(judge_error(data[start:].lstrip(b"\r\n"), error))
            return verdicts
        if event is NEED_DATA:
            break
        if isinstance(event, MessageFramed):
            verdicts.append(judge(event.message))
        elif isinstance(event, MalformedMessage):
            verdicts.append(judge_error(event.data, event.error, event.message))
        elif isinstance(event, KeepAliveReceived):
            continue
    rest = data[len(data) - framer.buffered :]
    if rest.strip(b"\r\n"):
        error = ParseError(
            f"incomplete message at the end of the stream ({len(rest)} octets); "
            "a transport waits for the rest, then closes the connection"
        )
        verdicts.append(judge_error(rest, error))
    if not verdicts:
        verdicts.append(judge_error(data, ParseError("no SIP message in the stream")))
    return verdicts


@app.command("check")
def check(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Files holding one SIP message each (as sent in a UDP datagram), or "
            "captures (pcap, pcapng): every SIP message over UDP and TCP in them.",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON Lines: one JSON object per message, with file, verdict "
            "(accepted/rejected), kind (request/response), method, status, reason, "
            "call_id, detail, headers (to add to the error response) and, with "
            "--stream, message (its 1-based position in the file).",
        ),
    ] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Read each file as a TCP/TLS byte stream: frame it by Content-Length "
            "and check every message in it.",
        ),
    ] = False,
) -> None:
    """Check captured SIP messages as sipua's UAS would judge them.

    For each file prints one line: 'FILE: accepted REQUEST <method> call-id=<id>',
    'FILE: accepted RESPONSE <status> call-id=<id>', 'FILE: rejected <status>
    <reason>: <detail>' (the response sipua would send) or 'FILE: rejected
    (discarded): <detail>' for a malformed response, which is dropped silently.
    With --stream, lines are labelled FILE#N for the N-th message. A capture file (pcap
    or pcapng, recognised by its magic number) is read whole: UDP messages are labelled
    FILE#<packet number> SRC->DST, TCP streams FILE#tcp SRC->DST#N.

    Exit status: 0 when every message is accepted, 1 when any is rejected, 2 on a
    usage error (no such file, unreadable file).
    """
    inputs: list[tuple[str, bytes]] = []
    for path in files:
        try:
            inputs.append((str(path), path.read_bytes()))
        except OSError as e:
            typer.echo(f"sipua check: cannot read {path}: {e.strerror or e}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    all_accepted = True
    for name, data in inputs:
        if is_capture(data):
            try:
                labelled = _capture_verdicts(name)
            except Exception as e:  # noqa: BLE001 - scapy's errors for a damaged capture vary
                typer.echo(f"sipua check: cannot read capture {name}: {e}", err=True)
                raise typer.Exit(EXIT_USAGE) from None
            if not labelled:
                typer.echo(f"sipua check: {name}: no SIP message in the capture", err=True)
                all_accepted = False
        elif stream:
            verdicts = _stream_verdicts(data)
            labelled = [(f"{name}#{i}", v, i) for i, v in enumerate(verdicts, 1)]
        else:
            verdict = check_message(data)
            labelled = [(name, verdict, None)]
        for label, verdict, index in labelled:
            all_accepted &= verdict.accepted
            if as_json:
                typer.echo(json.dumps(_record(name, verdict, index), ensure_ascii=False))
            else:
                typer.echo(_line(label, verdict))
    raise typer.Exit(EXIT_ACCEPTED if all_accepted else EXIT_REJECTED)


def _capture_verdicts(path: str) -> list[tuple[str, Verdict, int | None]]:
    datagrams, streams = read_capture(path)
    out: list[tuple[str, Verdict, int | None]] = []
    for d in datagrams:
        out.append((f"{path}#{d.frame} {d.src}->{d.dst}", check_message(d.data), d.frame))
    for s in streams:
        for i, verdict in enumerate(_stream_verdicts(s.data), 1):
            out.append((f"{path}#tcp {s.src}->{s.dst}#{i}", verdict, i))
    return out


# -- sipua replay ---------------------------------------------------------------


@app.command("replay")
def replay_command(
    capture: Annotated[
        Path,
        typer.Argument(
            help="A capture (pcap, pcapng) of the call: SIP over UDP or TCP, and the "
            "caller's RTP if it should be played.",
            show_default=False,
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="HOST:PORT of the UAS to call (a sipua serve, or any SIP server).",
            show_default=False,
        ),
    ],
    uri: Annotated[
        str | None,
        typer.Option(
            "--uri",
            help="Request-URI to call, e.g. sip:session_<id>@127.0.0.1:5060. Default: the "
            "captured one with its host:port replaced by --to.",
        ),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option("--transport", help="udp or tcp. Default: as captured."),
    ] = None,
    max_seconds: Annotated[
        float,
        typer.Option("--max-seconds", help="Play at most this much of the captured RTP."),
    ] = 30.0,
    answer_timeout: Annotated[
        float,
        typer.Option(
            "--answer-timeout",
            help="Seconds to wait for a final response to the INVITE (then CANCEL). "
            "Default: Timer B, 64*T1.",
        ),
    ] = 32.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every SIP message head to stderr.")
    ] = False,
) -> None:
    """Replay the caller's side of the first INVITE dialog of a capture against a UAS.

    The captured INVITE is sent again with the caller's SDP offer pointed at our own RTP
    socket, fresh Via/From tag/Call-ID/Contact and the caller's other headers
    (User-Agent, Supported, Allow, P-Asserted-Identity, X- …). On a 2xx the caller's RTP
    from the capture is played with its captured timing to the address of the answer,
    RTP coming back is counted, then BYE. A 3xx-6xx is ACKed and ends the replay.

    Exit status: 0 when the call was answered and hung up cleanly, 1 when it failed
    (rejected, no answer, BYE not answered 2xx), 2 on a usage error (unreadable file,
    no INVITE in the capture, bad --to or --uri).
    """
    from sipua.replay import EXIT_USAGE as REPLAY_USAGE
    from sipua.replay import ReplayUsageError, replay

    log = (lambda text: typer.echo(text, err=True)) if verbose else None
    try:
        result = replay(
            str(capture),
            to,
            uri=uri,
            transport=transport.lower() if transport else None,
            max_seconds=max_seconds,
            answer_timeout=answer_timeout,
            log=log,
        )
    except ReplayUsageError as e:
        typer.echo(f"sipua replay: {e}", err=True)
        raise typer.Exit(REPLAY_USAGE) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        for line in result.text():
            typer.echo(line)
    raise typer.Exit(result.exit_code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
