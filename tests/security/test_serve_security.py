"""The security gate in a real ``sipua serve``, over UDP, TCP and TLS on loopback.

Each case speaks from its own loopback address (127.0.0.x), so bans and rate
limits of one case never touch another.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time

import pytest
from integration.sipclient import SipClient, SipMessage, UacCall, new_branch, sdp_offer

from .conftest import answer, challenge_of, no_answer, options, sip_client

PASSWORD = "correct horse"
USERS = json.dumps([{"username": "trunk", "password": PASSWORD}])


def final_for(client: SipClient, call: UacCall, timeout: float = 5.0) -> SipMessage:
    """The final response to the INVITE with the call's current CSeq."""
    return client.recv_until(
        lambda m: (
            not m.is_request
            and m.status >= 200
            and m.call_id == call.call_id
            and m.cseq == (call.cseq, "INVITE")
        ),
        timeout,
    )


def invite_with_credentials(
    client: SipClient, uri: str, username: str, password: str, **answer_kw
) -> tuple[UacCall, SipMessage, SipMessage]:
    """INVITE, 401, ACK, INVITE with credentials: (call, the 401, the final answer)."""
    call = client.new_call(uri)
    client.send(call.invite())
    challenge = final_for(client, call)
    assert challenge.status == 401, challenge.start
    client.send(call.ack(challenge))
    name, value = answer(
        challenge_of(challenge), "INVITE", uri, username=username, password=password, **answer_kw
    )
    call.cseq += 1
    call.invite_branch = new_branch()
    client.send(call.invite(headers=[(name, value)]))
    final = final_for(client, call)
    if final.status >= 300:
        client.send(call.ack(final))  # else the refusal is retransmitted (Timer G)
    return call, challenge, final


def hang_up(client: SipClient, call: UacCall, ok: SipMessage) -> None:
    client.send(call.ack(ok))
    client.send(call.bye())  # in the dialog: not challenged
    bye = client.recv_until(
        lambda m: not m.is_request and m.call_id == call.call_id and m.cseq[1] == "BYE"
    )
    assert bye.status == 200


def closed_by_server(transport: str, server: tuple[str, int], source: str) -> bool:
    """True when the server ends the connection (reset, end of stream, failed handshake)."""
    try:
        with sip_client(transport, server, source, timeout=3.0) as client:
            client.send(options(client))
            client.recv(3.0)
    except TimeoutError:
        return False  # still open, silent: not what "closed at accept" means
    except (ConnectionError, OSError):
        return True
    return False


def session_uri(service, session: dict) -> str:
    return f"sip:session_{session['id']}@127.0.0.1:{service.ports['udp']}"


def security_state(service) -> dict:
    with service.client() as c:
        return c.get("/v1/sip-security").json()


# -- digest authentication -------------------------------------------------------------------------


def test_calls_need_credentials_and_answers_reveal_nothing(serve):
    service = serve(
        env={
            "SIPUA_SECURITY__AUTH": "required",
            "SIPUA_SECURITY__USERS": USERS,
            "SIPUA_SECURITY__MAX_AUTH_FAILURES": "50",
            "SIPUA_LOG_FORMAT": "json",
        }
    )
    session = service.create_session()
    uri = session_uri(service, session)
    server = ("127.0.0.1", service.ports["udp"])

    with sip_client("udp", server, "127.0.0.11") as client:
        call, challenge, ok = invite_with_credentials(client, uri, "trunk", PASSWORD)
        offered = [v for _, v in challenge_of(challenge)]
        assert [v.split("algorithm=")[1].split(",")[0] for v in offered] == ["SHA-256", "MD5"]
        assert all('qop="auth"' in v and "opaque=" in v for v in offered)
        assert ok.status == 200, ok.start
        hang_up(client, call, ok)

    # Unknown user and wrong password: the same answer (only per-message fields differ).
    answers = []
    for username, password in (("nobody", PASSWORD), ("trunk", "wrong horse")):
        with sip_client("udp", server, "127.0.0.12") as client:
            _, _, refused = invite_with_credentials(client, uri, username, password)
            assert refused.status == 403
            per_message = {"via", "from", "to", "call-id", "cseq"}
            answers.append(
                (
                    refused.start,
                    [(n.lower(), v) for n, v in refused.headers if n.lower() not in per_message],
                )
            )
    assert answers[0] == answers[1]

    # The other transports are guarded the same way.
    with sip_client("tcp", ("127.0.0.1", service.ports["tcp"]), "127.0.0.13") as client:
        tcp_uri = f"sip:session_{session['id']}@127.0.0.1:{service.ports['tcp']};transport=tcp"
        call, _, ok = invite_with_credentials(client, tcp_uri, "trunk", PASSWORD)
        assert ok.status == 200
        hang_up(client, call, ok)
    with sip_client("tls", ("127.0.0.1", service.ports["tls"]), "127.0.0.13") as client:
        client.send(options(client))
        assert client.final_response("OPTIONS").status == 401

    secret = service.data_dir / "digest_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    counters = security_state(service)["counters"]
    assert counters["auth_ok"] == 2 and counters["auth_failures"] == 2
    # Failures are logged as JSON lines with the peer; the password never is.
    lines = [json.loads(line) for line in service.stderr().splitlines() if line.startswith("{")]
    failures = [e for e in lines if e.get("logger") == "sipua.security" and "failed" in e["msg"]]
    assert failures and failures[0]["peer"] == "127.0.0.12"
    assert PASSWORD not in service.stderr() and "wrong horse" not in service.stderr()


def test_api_credentials_and_restart_keep_nonces(serve, tmp_path):
    data = tmp_path / "persist"
    env = {"SIPUA_SECURITY__AUTH": "required"}
    service = serve(env=env, data_dir=data)
    session = service.create_session()
    with service.client() as c:
        r = c.post(
            "/v1/sip-credentials",
            json={"username": "pbx", "allowed_ips": ["127.0.0.21/32", "::1"]},
        )
        assert r.status_code == 201, r.text
        created = r.json()
    password = created["password"]
    server = ("127.0.0.1", service.ports["udp"])
    with sip_client("udp", server, "127.0.0.21") as client:
        call, _, ok = invite_with_credentials(
            client, session_uri(service, session), "pbx", password
        )
        assert ok.status == 200
        hang_up(client, call, ok)
    # From an address outside the credential's networks: refused like a wrong password.
    with sip_client("udp", server, "127.0.0.22") as client:
        _, _, refused = invite_with_credentials(
            client, session_uri(service, session), "pbx", password
        )
        assert refused.status == 403

    # A challenge issued before a restart is still good after it: the secret is on disk.
    with sip_client("udp", server, "127.0.0.21") as client:
        call = client.new_call(session_uri(service, session))
        client.send(call.invite())
        challenge = final_for(client, call)
        client.send(call.ack(challenge))
    service.stop()
    service = serve(env=env, data_dir=data)
    uri = session_uri(service, session)
    with sip_client("udp", ("127.0.0.1", service.ports["udp"]), "127.0.0.21") as client:
        call = client.new_call(uri)
        name, value = answer(
            challenge_of(challenge), "INVITE", uri, username="pbx", password=password
        )
        client.send(call.invite(headers=[(name, value)]))
        ok = final_for(client, call)
        assert ok.status == 200, ok.start  # not 401: neither stale nor unknown
        hang_up(client, call, ok)
        # Deleted credentials stop working at once.
        with service.client() as c:
            assert c.delete(f"/v1/sip-credentials/{created['id']}").status_code == 204
        _, _, refused = invite_with_credentials(client, uri, "pbx", password)
        assert refused.status == 403


# -- bans ------------------------------------------------------------------------------------------


def test_failed_authentications_ban_the_source_until_the_ban_ends(serve):
    ban_time = 2.0
    service = serve(
        env={
            "SIPUA_SECURITY__AUTH": "required",
            "SIPUA_SECURITY__USERS": USERS,
            "SIPUA_SECURITY__MAX_AUTH_FAILURES": "3",
            "SIPUA_SECURITY__BAN_TIME": str(ban_time),
        }
    )
    session = service.create_session()
    uri = session_uri(service, session)
    server = ("127.0.0.1", service.ports["udp"])
    with sip_client("udp", server, "127.0.0.31") as client:
        for guess in ("a", "b", "c"):
            _, _, refused = invite_with_credentials(client, uri, "trunk", guess)
            assert refused.status == 403
        banned_at = time.monotonic()
        # Banned: the next INVITE, even one that would carry the good password, gets nothing.
        call = client.new_call(uri)
        client.send(call.invite())
        assert no_answer(client, 0.5, call.call_id)
        state = security_state(service)
        assert [b["address"] for b in state["bans"]] == ["127.0.0.31"]
        assert state["counters"]["bans"] == 1 and state["counters"]["banned_refused"] >= 1
    # Another source is not affected.
    with sip_client("udp", server, "127.0.0.32") as client:
        call, _, ok = invite_with_credentials(client, uri, "trunk", PASSWORD)
        assert ok.status == 200
        hang_up(client, call, ok)
    # The good password from the banned source: refused (no answer) until the ban ends.
    with sip_client("udp", server, "127.0.0.31") as client:
        answered_after = None
        deadline = banned_at + ban_time + 3.0
        while time.monotonic() < deadline:
            call = client.new_call(uri)
            client.send(call.invite())
            try:
                first = final_for(client, call, timeout=0.25)
            except TimeoutError:
                continue
            answered_after = time.monotonic() - banned_at
            assert first.status == 401
            client.send(call.ack(first))
            break
        assert answered_after is not None, "the ban never ended"
        assert answered_after >= ban_time - 0.05
        print(f"\nban: answered again {answered_after:.2f} s after the ban (ban_time {ban_time} s)")
        call, _, ok = invite_with_credentials(client, uri, "trunk", PASSWORD)
        assert ok.status == 200
        hang_up(client, call, ok)


# -- allowlist, scanners, SIPS, TLS-only sessions, overload -----------------------------------


def test_allowlist_reject_mode_and_tcp_closed_at_accept(serve):
    service = serve(env={"SIPUA_SECURITY__ALLOWLIST": "127.0.0.41/32,::1"})
    udp = ("127.0.0.1", service.ports["udp"])
    with (
        sip_client("udp", udp, "127.0.0.41") as inside,
        sip_client("udp", udp, "127.0.0.42") as outside,
    ):
        inside.send(options(inside))
        assert inside.final_response("OPTIONS").status == 200
        outside.send(options(outside))
        assert outside.final_response("OPTIONS").status == 403
    tcp = ("127.0.0.1", service.ports["tcp"])
    assert closed_by_server("tcp", tcp, "127.0.0.42")  # at accept, before any SIP was read
    with sip_client("tcp", tcp, "127.0.0.41") as inside:
        inside.send(options(inside))
        assert inside.final_response("OPTIONS").status == 200
    tls = ("127.0.0.1", service.ports["tls"])
    # Closed once accepted (Python's TLS server hands the connection over after the
    # handshake), so either the handshake or the first read fails.
    assert closed_by_server("tls", tls, "127.0.0.42")
    with sip_client("tls", tls, "127.0.0.41") as inside:
        inside.send(options(inside))
        assert inside.final_response("OPTIONS").status == 200
    assert security_state(service)["counters"]["allowlist_refused"] >= 3


def test_allowlist_drop_mode(serve):
    service = serve(
        env={"SIPUA_SECURITY__ALLOWLIST": "127.0.0.51", "SIPUA_SECURITY__ALLOWLIST_ACTION": "drop"}
    )
    udp = ("127.0.0.1", service.ports["udp"])
    with sip_client("udp", udp, "127.0.0.52") as outside:
        outside.send(options(outside))
        assert no_answer(outside)
    with sip_client("udp", udp, "127.0.0.51") as inside:
        inside.send(options(inside))
        assert inside.final_response("OPTIONS").status == 200


def test_scanners_sips_and_tls_only_sessions(serve):
    service = serve()
    udp = ("127.0.0.1", service.ports["udp"])
    # A scanner gets nothing, and its address is banned for what it sends next.
    with sip_client("udp", udp, "127.0.0.61") as scanner:
        scanner.send(options(scanner, user_agent="friendly-scanner"))
        assert no_answer(scanner)
        scanner.send(options(scanner, user_agent="Asterisk PBX"))
        assert no_answer(scanner)
    with sip_client("udp", udp, "127.0.0.62") as pbx:
        pbx.send(options(pbx, user_agent="Asterisk PBX"))
        assert pbx.final_response("OPTIONS").status == 200
        # RFC 5630: a sips: Request-URI over UDP is refused.
        call = pbx.new_call(f"sips:session_x@127.0.0.1:{service.ports['tls']}")
        pbx.send(call.invite())
        refused = final_for(pbx, call)
        assert refused.status == 416
        pbx.send(call.ack(refused))

    tls_only = service.create_session(
        provider={"type": "sip", "transport": "tls", "srtp": {"enabled": "required"}}
    )
    with sip_client("udp", udp, "127.0.0.62") as pbx:
        call = pbx.new_call(session_uri(service, tls_only))
        pbx.send(call.invite())
        refused = final_for(pbx, call)
        assert refused.status == 480
        assert (refused.get("warning") or "").startswith("381 ")
        pbx.send(call.ack(refused))
    tls = ("127.0.0.1", service.ports["tls"])
    with sip_client("tls", tls, "127.0.0.62") as pbx:
        uri = f"sips:session_{tls_only['id']}@127.0.0.1:{service.ports['tls']}"
        call = pbx.new_call(uri)
        pbx.send(call.invite(body=sdp_offer()))  # no crypto offered: past the gate, refused by SDP
        answer_to_plain = final_for(pbx, call)
        assert answer_to_plain.status == 488
        pbx.send(call.ack(answer_to_plain))
    # An OPTIONS flood from one source: the first burst (100) is answered, the rest dropped.
    with sip_client("udp", udp, "127.0.0.63") as flooder:
        for _ in range(300):
            flooder.send(options(flooder))
        answered = 0
        while True:
            try:
                flooder.recv(0.5)
            except TimeoutError:
                break
            answered += 1
        assert 100 <= answered <= 130, answered  # burst + what refills during the flood
    counters = security_state(service)["counters"]
    assert counters["scanners_dropped"] == 1 and counters["sips_refused"] == 1
    assert counters["tls_required_refused"] == 1 and counters["bans"] == 1
    assert counters["rate_limited"] >= 170


def test_overload_answers_503_with_retry_after_and_recovers(serve):
    service = serve(
        env={
            "SIPUA_SECURITY__MAX_TRANSACTIONS": "10",
            "SIPUA_SECURITY__RETRY_AFTER": "3",
            "SIPUA_SIP__T1": "0.02",  # transactions linger 64*T1 = 1.28 s
        }
    )
    udp = ("127.0.0.1", service.ports["udp"])
    with sip_client("udp", udp, "127.0.0.71") as client:
        # Ten transactions, one after the other: all served (each lingers 1.28 s after).
        for _ in range(10):
            client.send(options(client))
            assert client.final_response("OPTIONS", timeout=3.0).status == 200
        # Then a burst on top of them: over the limit, refused with 503 and Retry-After.
        # (The UDP listener hands a burst over at once, so it counts as a whole.)
        for _ in range(30):
            client.send(options(client))
        refused = [client.final_response("OPTIONS", timeout=3.0) for _ in range(30)]
        assert [m.status for m in refused] == [503] * 30
        assert {m.get("retry-after") for m in refused} == {"3"}
        deadline = time.monotonic() + 5.0
        while True:  # recovers by itself once the transactions have ended
            client.send(options(client))
            if client.final_response("OPTIONS", timeout=2.0).status == 200:
                break
            assert time.monotonic() < deadline, "still refusing after the transactions ended"
            time.sleep(0.2)
    assert security_state(service)["counters"]["overload_refused"] >= 30


def test_datagrams_left_waiting_get_503_and_the_service_recovers(serve):
    # The service is stopped (SIGSTOP) while a burst of requests arrives, as a process too
    # busy to read its socket would be: the burst waits in the kernel. On resuming, the
    # first datagram's wait (from its kernel timestamp) is over overload_queue_delay, so the
    # burst is refused with 503 rather than served late. Loop lag is kept out of it.
    service = serve(
        env={
            "SIPUA_SECURITY__OVERLOAD_QUEUE_DELAY": "0.2",
            "SIPUA_SECURITY__OVERLOAD_LAG": "30",
            "SIPUA_SECURITY__RETRY_AFTER": "2",
        }
    )
    udp = ("127.0.0.1", service.ports["udp"])
    with sip_client("udp", udp, "127.0.0.72") as client:
        client.send(options(client))
        assert client.final_response("OPTIONS", timeout=3.0).status == 200
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(20):
                client.send(options(client))
            time.sleep(0.6)  # the burst waits while the process cannot run
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        refused = [client.final_response("OPTIONS", timeout=3.0) for _ in range(20)]
        assert [m.status for m in refused] == [503] * 20
        assert {m.get("retry-after") for m in refused} == {"2"}
        deadline = time.monotonic() + 5.0
        while True:  # prompt requests are served again by themselves
            client.send(options(client))
            if client.final_response("OPTIONS", timeout=2.0).status == 200:
                break
            assert time.monotonic() < deadline, "still refusing with nothing queued"
    state = security_state(service)
    assert state["counters"]["overload_refused"] >= 20 and state["queue_delay_ms"] < 200


def test_new_calls_left_waiting_get_a_stateless_503_and_calls_in_progress_end(serve):
    # As above with calls: one is connected, then the service stops while new INVITEs and
    # the connected call's BYE arrive. On resuming the new INVITEs get 503 from the
    # transaction layer, before any transaction or call exists; the BYE is served.
    service = serve(
        env={"SIPUA_SECURITY__OVERLOAD_QUEUE_DELAY": "0.2", "SIPUA_SECURITY__OVERLOAD_LAG": "30"}
    )
    session = service.create_session()
    udp = ("127.0.0.1", service.ports["udp"])
    uri = f"sip:session_{session['id']}@127.0.0.1:{udp[1]}"
    with sip_client("udp", udp, "127.0.0.73") as client:
        call = client.new_call(uri)
        client.send(call.invite(sdp_offer()))
        ok = client.final_response("INVITE", timeout=5.0)
        assert ok.status == 200
        client.send(call.ack(ok))
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            waiting = [client.new_call(uri) for _ in range(10)]
            for other in waiting:
                client.send(other.invite(sdp_offer()))
            client.send(call.bye())
            time.sleep(0.6)  # all of it waits while the process cannot run
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        answers = [
            client.recv_until(lambda m: not m.is_request and m.status >= 200, 3.0)
            for _ in range(11)
        ]
        by_method = sorted((m.cseq[1], m.status) for m in answers)
        assert by_method == [("BYE", 200)] + [("INVITE", 503)] * 10
    with service.client() as c:
        metrics = c.get("/metrics").text
    assert "sipua_sip_transaction_shed_total 10.0" in metrics


def test_ipv6_loopback_allowlist(serve):
    """The allowlist on an IPv6 listener: ::1 is let in when listed, refused when not."""
    if not socket.has_ipv6:
        pytest.fail("this host has no IPv6: the IPv6 allowlist test needs ::1")
    service = serve("--host", "::1", env={"SIPUA_SECURITY__ALLOWLIST": "::1/128"})
    port = service.ports["udp"]
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.settimeout(3)
    try:
        sock.bind(("::1", 0))
        local = sock.getsockname()
        request = (
            f"OPTIONS sip:[::1]:{port} SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{local[1]};branch={new_branch()}\r\n"
            f"From: <sip:t@[::1]>;tag=1\r\nTo: <sip:[::1]>\r\nCall-ID: v6-1\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(request, ("::1", port))
        data, _ = sock.recvfrom(65535)
        assert data.startswith(b"SIP/2.0 200")
    finally:
        sock.close()
    service.stop()
    refusing = serve("--host", "::1", env={"SIPUA_SECURITY__ALLOWLIST": "2001:db8::/32"})
    port = refusing.ports["tcp"]
    with socket.create_connection(("::1", port), timeout=3) as conn:
        try:  # closed at accept (aborted: a reset, or an end of stream)
            conn.sendall(request)
            assert conn.recv(100) == b""
        except ConnectionResetError:
            pass
