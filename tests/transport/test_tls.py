"""TLS for SIP (``sipua/transport/tls.py``): the self-signed certificate, contexts, versions."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import stat
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from integration.sipclient import insecure_tls_context

from sipua.transport.tls import client_context, ensure_certificate, server_context

from .conftest import MakeManager, StreamPeer
from .test_stream import call_ids, options


def test_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path, ["sip.example.test", "192.0.2.7"])
    assert cert_path == tmp_path / "tls" / "sipua-cert.pem"
    first = cert_path.read_bytes(), key_path.read_bytes()
    again = ensure_certificate(tmp_path, ["other.example.test"])
    assert again == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first  # not regenerated
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # the key is its owner's only

    cert = x509.load_pem_x509_certificate(first[0])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    dns = set(names.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "::1", "192.0.2.7"} <= ips
    assert {"localhost", "sip.example.test"} <= dns
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_certificate_made_again_when_a_file_is_missing(tmp_path: Path) -> None:
    cert_path, key_path = ensure_certificate(tmp_path)
    old = cert_path.read_bytes()
    key_path.unlink()
    ensure_certificate(tmp_path)
    assert key_path.exists() and cert_path.read_bytes() != old
    server_context(cert_path, key_path)  # the new key matches the new certificate


@pytest.mark.parametrize(("setting", "version"), [("1.2", "TLSv1_2"), ("1.3", "TLSv1_3")])
def test_server_minimum_version(tmp_path: Path, setting: str, version: str) -> None:
    ctx = server_context(*ensure_certificate(tmp_path), min_version=setting)
    assert ctx.minimum_version == getattr(ssl.TLSVersion, version)


def only(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client offering ``version`` alone, even one OpenSSL's defaults no longer allow."""
    ctx = insecure_tls_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


async def handshake(port: int, ctx: ssl.SSLContext) -> str:
    """The version negotiated with 127.0.0.1:port, or raise the handshake's error."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5.0
    )
    try:
        return writer.get_extra_info("ssl_object").version()
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass


async def serving(ctx: ssl.SSLContext) -> asyncio.AbstractServer:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    return await asyncio.start_server(idle, "127.0.0.1", 0, ssl=ctx)


async def test_tls_1_1_refused_1_2_accepted(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path)
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.load_cert_chain(cert, key)
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lax.minimum_version = ssl.TLSVersion.TLSv1_1
    servers = [await serving(lax), await serving(server_context(cert, key))]
    try:
        lax_port, strict_port = (s.sockets[0].getsockname()[1] for s in servers)
        # The control: this client really speaks TLS 1.1 when a server lets it.
        assert await handshake(lax_port, only(ssl.TLSVersion.TLSv1_1)) == "TLSv1.1"
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await handshake(strict_port, only(ssl.TLSVersion.TLSv1_1))
        assert await handshake(strict_port, only(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def test_sip_over_tls_listener(make_manager: MakeManager, tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path)
    manager, rec = await make_manager(
        tcp_port=None, udp_port=None, tls_port=0, tls_context=server_context(cert, key)
    )
    port = manager.local_port("tls")
    assert manager.contact_uri("tls").startswith("sips:")
    assert manager.contact_uri("tls", sips=False).endswith(";transport=tls")
    # A client that verifies the self-signed certificate, host name included.
    verifying = client_context(ca_file=cert)
    peer = await StreamPeer.connect(port, verifying)
    try:
        await peer.send(options("over-tls"))
        await rec.wait_for(lambda: rec.messages)
        assert call_ids(rec) == ["over-tls"]
        ((_, via),) = rec.messages
        assert via.transport == "tls" and via.secure and via.reliable
    finally:
        await peer.close()
    with pytest.raises(ssl.SSLError):  # without the certificate there is no trust
        await handshake(port, client_context())
