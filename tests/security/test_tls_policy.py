"""TLS policy: client certificates on the listener, verification and SNI for outbound TLS."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from integration.baresip import wait_events
from integration.sipclient import build_response, frame, parse, sdp_offer

from sipua.service.config import load_settings
from sipua.service.security_setup import client_tls_context, server_tls_options
from sipua.transport.stream import ConnectionPool
from sipua.transport.tls import server_context

from .conftest import options, sip_client


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _issue(ca, ca_key, cn: str, *, server: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A test CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("sipua test CA"))
        .issuer_name(_name("sipua test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert, _ = _write(root / "ca", ca, ca_key)
    server_cert, server_key = _write(root / "server", *_issue(ca, ca_key, "localhost", server=True))
    client_cert, client_key = _write(root / "client", *_issue(ca, ca_key, "pbx", server=False))
    return {
        "ca": ca_cert,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def _client_context(pki, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki["ca"]))
    ctx.check_hostname = False
    if with_cert:
        ctx.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    return ctx


def _options_over_tls(service, pki, with_cert: bool, source: str) -> int:
    with sip_client(
        "tls",
        ("127.0.0.1", service.ports["tls"]),
        source,
        ssl_context=_client_context(pki, with_cert),
        timeout=3.0,
    ) as client:
        client.send(options(client))
        return client.final_response("OPTIONS").status


def _tls_env(pki, mode: str) -> dict[str, str]:
    return {
        "SIPUA_SIP__TLS_CERT": str(pki["server_cert"]),
        "SIPUA_SIP__TLS_KEY": str(pki["server_key"]),
        "SIPUA_SECURITY__TLS__CLIENT_CERTIFICATES": mode,
        "SIPUA_SECURITY__TLS__CLIENT_CA_FILE": str(pki["ca"]),
    }


def test_client_certificates_required(serve, pki):
    service = serve(env=_tls_env(pki, "require"))
    assert _options_over_tls(service, pki, True, "127.0.0.81") == 200
    # Without a certificate the handshake fails (TLS 1.2) or the server's alert ends the
    # connection at the first read (TLS 1.3): either way no SIP gets through.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _options_over_tls(service, pki, False, "127.0.0.82")


def test_client_certificates_requested(serve, pki):
    service = serve(env=_tls_env(pki, "request"))
    assert _options_over_tls(service, pki, True, "127.0.0.83") == 200
    assert _options_over_tls(service, pki, False, "127.0.0.84") == 200


def test_server_context_options(pki):
    settings = load_settings(
        security={"tls": {"client_certificates": "require", "client_ca_file": str(pki["ca"])}}
    )
    ctx = server_context(pki["server_cert"], pki["server_key"], **server_tls_options(settings))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert server_tls_options(load_settings()) == {}


class _TlsPeer:
    """A TLS listener on localhost that records the SNI name and what it receives."""

    def __init__(self, pki) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki["server_cert"]), str(pki["server_key"]))
        self.server_names: list[str | None] = []
        self.ctx.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        self.received = asyncio.Queue()

    async def start(self) -> int:
        async def handle(reader, writer):
            try:
                data = await reader.read(65535)
                if data:
                    self.received.put_nowait(data)
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ctx)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def _send_outbound(
    pki, security: dict, host: str = "localhost"
) -> tuple[_TlsPeer, ConnectionPool]:
    settings = load_settings(security={"tls": security})
    peer = _TlsPeer(pki)
    port = await peer.start()
    pool = ConnectionPool(
        lambda m, p: None,
        lambda e, p: None,
        client_ssl=client_tls_context(settings),
        connect_timeout=3,
    )
    pool.send("tls", (host, port), b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    return peer, pool


async def _outcome(peer: _TlsPeer, pool: ConnectionPool) -> bytes | None:
    """What the peer received, or None once the pool reports the connection failed."""
    try:
        async with asyncio.timeout(5):
            while pool.counters["connect_failures"] == 0:
                try:
                    return await asyncio.wait_for(peer.received.get(), 0.05)
                except TimeoutError:
                    continue
        return None
    finally:
        await pool.close()
        await peer.close()


async def test_outbound_tls_verifies_with_the_configured_ca_and_sends_sni(pki):
    peer, pool = await _send_outbound(pki, {"ca_file": str(pki["ca"])})
    assert await _outcome(peer, pool) == b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    assert peer.server_names == ["localhost"]  # SNI: the host name connected to


async def test_outbound_tls_refuses_an_untrusted_certificate(pki):
    peer, pool = await _send_outbound(pki, {})  # the system store does not know our test CA
    assert await _outcome(peer, pool) is None
    assert pool.counters["connect_failures"] == 1


async def test_outbound_tls_without_verification_when_configured(pki):
    peer, pool = await _send_outbound(pki, {"verify_certificate": False}, host="127.0.0.1")
    assert await _outcome(peer, pool) is not None
    assert peer.server_names == [None]  # an IP literal: no SNI


# -- an outbound session over TLS, end to end ---------------------------------------------------


class _TlsPbx:
    """A PBX on TLS (a thread with a blocking ``ssl`` socket) that answers one INVITE with 200,
    takes the ACK, and answers the BYE; it records each request's first line and top Via."""

    def __init__(self, pki) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki["server_cert"]), str(pki["server_key"]))
        self.listener = ctx.wrap_socket(
            socket.create_server(("127.0.0.1", 0)), server_side=True, do_handshake_on_connect=True
        )
        self.listener.settimeout(20)
        self.port = self.listener.getsockname()[1]
        self.requests: list[tuple[str, str]] = []
        self.handshake_errors: list[str] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (OSError, ssl.SSLError) as e:  # an untrusting client aborts the handshake
            self.handshake_errors.append(str(e))
            self.done.set()
            return
        conn.settimeout(20)
        buffer = bytearray()
        try:
            while not self.done.is_set():
                data = frame(buffer)
                if data is None:
                    chunk = conn.recv(65535)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                msg = parse(data)
                if not msg.is_request:
                    continue
                self.requests.append((msg.start, msg.top_via))
                if msg.method == "INVITE":
                    sdp = sdp_offer(40000, codecs="0")
                    conn.sendall(
                        build_response(
                            msg,
                            200,
                            to_tag="pbxtag",
                            headers=[
                                ("Contact", f"<sips:pbx@127.0.0.1:{self.port}>"),
                                ("Content-Type", "application/sdp"),
                            ],
                            body=sdp,
                        )
                    )
                elif msg.method == "BYE":
                    conn.sendall(build_response(msg, 200))
                    self.done.set()
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self._thread.join(10)


def test_an_outbound_session_calls_over_tls_and_hangs_up_on_the_same_connection(serve, pki):
    pbx = _TlsPbx(pki)
    try:
        service = serve(env={"SIPUA_SECURITY__TLS__CA_FILE": str(pki["ca"])})
        session = service.create_session(
            provider={
                "type": "sip",
                "codecs": ["PCMU"],
                "sip_uri": f"sips:+1555@127.0.0.1:{pbx.port}",
            }
        )
        [connected] = wait_events(service, session["id"], "session.provider.connected")
        assert connected["data"]["codec"] == "PCMU"
        assert service.client().post(f"/v1/sessions/{session['id']}/end").status_code == 200
        assert pbx.done.wait(10)
        methods = [start.split()[0] for start, _ in pbx.requests]
        assert methods == ["INVITE", "ACK", "BYE"], pbx.requests
        assert pbx.requests[0][0].startswith(f"INVITE sips:+1555@127.0.0.1:{pbx.port} ")
        assert all(via.startswith("SIP/2.0/TLS ") for _, via in pbx.requests)
        [gone] = wait_events(service, session["id"], "session.provider.disconnected")
        assert gone["data"]["reason"] == "session-ended"
    finally:
        pbx.close()


def test_an_outbound_tls_call_to_an_untrusted_pbx_fails_without_sending_anything(serve, pki):
    pbx = _TlsPbx(pki)
    try:
        service = serve()  # the system's CAs: the test CA is not among them
        session = service.create_session(
            provider={
                "type": "sip",
                "sip_uri": f"sips:+1555@127.0.0.1:{pbx.port}",
                "dial_timeout_s": 20,
            }
        )
        [failed] = wait_events(service, session["id"], "session.provider.failed", timeout=10)
        assert pbx.done.wait(5)
        assert pbx.requests == [] and pbx.handshake_errors  # not a byte of SIP went out
        data = failed["data"]
        assert (data["status_code"], data["reason"], data["transport"]) == (
            503,
            "transport-error",
            "tls",
        ), failed
    finally:
        pbx.close()
