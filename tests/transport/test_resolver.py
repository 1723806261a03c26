"""RFC 3263 server location (``sipua/transport/resolver.py``) against a stub nameserver.

The stub is an authoritative UDP nameserver on 127.0.0.1 that answers from a table
(dnspython builds and parses the messages) and records every question it was asked, so a
test sees both the targets and which lookups led to them. No query leaves the machine: the
resolver under test is made with ``configure=False`` and knows the stub alone.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import dns.asyncresolver
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from sipua.sip.uri import SipUri, parse_uri
from sipua.transport.resolver import Srv, Target, locate, srv_order
from sipua.transport.stream import ConnectionPool
from sipua.transport.tls import client_context, ensure_certificate, server_context

ALL = {"udp", "tcp", "tls"}


class StubDns(asyncio.DatagramProtocol):
    """An authoritative nameserver answering from ``records``: {(name, type): [rdata text]}.

    A name in the table answers NOERROR with no records for a type it lacks (NODATA);
    a name not in it answers NXDOMAIN. ``queries`` lists (name, type) as asked.
    """

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = {
            (dns.name.from_text(name), dns.rdatatype.from_text(rdtype)): texts
            for (name, rdtype), texts in records.items()
        }
        self.names = {name for name, _ in self.records}
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append(
            (question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype))
        )
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        texts = self.records.get((question.name, question.rdtype))
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", question.rdtype, texts)
            )
        elif question.name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    def add(self, name: str, rdtype: str, texts: list[str]) -> None:
        """Answer ``name``/``rdtype`` with ``texts`` from now on."""
        key = dns.name.from_text(name)
        self.records[(key, dns.rdatatype.from_text(rdtype))] = texts
        self.names.add(key)

    def asked(self, rdtype: str) -> list[str]:
        return [name for name, t in self.queries if t == rdtype]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def resolver(self) -> dns.asyncresolver.Resolver:
        """A resolver that asks this stub alone, with bounded waits."""
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.timeout = 1.0
        resolver.lifetime = 2.0
        return resolver

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


MakeStub = Callable[[dict[tuple[str, str], list[str]]], Awaitable[StubDns]]


async def start_stub_dns(records: dict[tuple[str, str], list[str]]) -> StubDns:
    """A :class:`StubDns` listening on 127.0.0.1 at an ephemeral port; close() stops it."""
    loop = asyncio.get_running_loop()
    _, stub = await loop.create_datagram_endpoint(
        lambda: StubDns(records), local_addr=("127.0.0.1", 0)
    )
    return stub


@pytest.fixture
async def stub_dns() -> AsyncIterator[MakeStub]:
    started: list[StubDns] = []

    async def make(records: dict[tuple[str, str], list[str]]) -> StubDns:
        started.append(await start_stub_dns(records))
        return started[-1]

    yield make
    for stub in started:
        stub.close()


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


async def run_locate(stub: StubDns, uri: str, available: set[str] = ALL, **kw) -> list[Target]:
    return await asyncio.wait_for(
        locate(sip(uri), transports_available=available, resolver=stub.resolver(), **kw), 10.0
    )


def places(targets: list[Target]) -> list[tuple[str, str, int]]:
    return [(t.transport, t.host, t.port) for t in targets]


async def test_naptr_leads_to_srv_and_srv_to_addresses(stub_dns: MakeStub) -> None:
    stub = await stub_dns(
        {
            ("example.test", "NAPTR"): [
                '20 10 "s" "SIP+D2U" "" _sip._udp.example.test.',
                '10 10 "s" "SIP+D2T" "" _sip._tcp.example.test.',
                '30 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.',
                '5 10 "a" "SIP+D2U" "" hosts.example.test.',  # not to SRV: not for us
                '5 10 "s" "E2U+sip" "" _sip._udp.other.test.',  # ENUM, not SIP
            ],
            ("_sip._tcp.example.test", "SRV"): ["0 0 5070 pbx1.example.test."],
            ("_sip._udp.example.test", "SRV"): ["0 0 5080 pbx2.example.test."],
            ("pbx1.example.test", "A"): ["192.0.2.10"],
            ("pbx1.example.test", "AAAA"): ["2001:db8::10"],
            ("pbx2.example.test", "A"): ["192.0.2.20"],
        }
    )
    targets = await run_locate(stub, "sip:alice@example.test", available={"udp", "tcp"})
    # NAPTR order first (tcp 10, then udp 20); the SIPS+D2T record is for a TLS we lack.
    assert places(targets) == [
        ("tcp", "192.0.2.10", 5070),
        ("tcp", "2001:db8::10", 5070),
        ("udp", "192.0.2.20", 5080),
    ]
    assert targets[0].name == "pbx1.example.test" and targets[0].domain == "example.test"
    assert stub.asked("NAPTR") == ["example.test"]
    assert sorted(stub.asked("SRV")) == ["_sip._tcp.example.test", "_sip._udp.example.test"]
    assert "example.test" not in stub.asked("A")  # no fall back to the domain's addresses


async def test_srv_records_are_tried_by_priority(stub_dns: MakeStub) -> None:
    stub = await stub_dns(
        {
            ("pbx.test", "A"): ["192.0.2.1"],
            ("_sip._udp.pbx.test", "SRV"): [
                "20 0 5062 c.pbx.test.",
                "5 0 5060 a.pbx.test.",
                "10 0 5061 b.pbx.test.",
            ],
            ("a.pbx.test", "A"): ["192.0.2.11"],
            ("b.pbx.test", "A"): ["192.0.2.12"],
            ("c.pbx.test", "A"): ["192.0.2.13"],
        }
    )
    targets = await run_locate(stub, "sip:bob@pbx.test;transport=udp")
    assert places(targets) == [
        ("udp", "192.0.2.11", 5060),
        ("udp", "192.0.2.12", 5061),
        ("udp", "192.0.2.13", 5062),
    ]
    assert stub.asked("NAPTR") == []  # the transport was given (RFC 3263 §4.1)
    assert stub.asked("SRV") == ["_sip._udp.pbx.test"]


async def test_a_port_in_the_uri_skips_naptr_and_srv(stub_dns: MakeStub) -> None:
    stub = await stub_dns(
        {
            ("pbx.test", "A"): ["192.0.2.1"],
            ("pbx.test", "NAPTR"): ['10 10 "s" "SIP+D2T" "" _sip._tcp.pbx.test.'],
            ("_sip._udp.pbx.test", "SRV"): ["0 0 5099 other.pbx.test."],
        }
    )
    targets = await run_locate(stub, "sip:bob@pbx.test:5070")
    assert places(targets) == [("udp", "192.0.2.1", 5070)]
    assert sorted(t for _, t in stub.queries) == ["A", "AAAA"]
    tcp = await run_locate(stub, "sip:bob@pbx.test:5070", explicit_transport="tcp")
    assert places(tcp) == [("tcp", "192.0.2.1", 5070)]


async def test_a_sips_uri_is_reached_over_tls_only(stub_dns: MakeStub) -> None:
    stub = await stub_dns(
        {
            ("secure.test", "NAPTR"): [
                '10 10 "s" "SIP+D2U" "" _sip._udp.secure.test.',
                '20 10 "s" "SIPS+D2T" "" _sips._tcp.secure.test.',
            ],
            ("_sip._udp.secure.test", "SRV"): ["0 0 5060 plain.secure.test."],
            ("_sips._tcp.secure.test", "SRV"): ["0 0 5061 tls.secure.test."],
            ("plain.secure.test", "A"): ["192.0.2.30"],
            ("tls.secure.test", "A"): ["192.0.2.31"],
        }
    )
    targets = await run_locate(stub, "sips:carol@secure.test")
    assert places(targets) == [("tls", "192.0.2.31", 5061)]
    # TLS checks the URI's domain, not the (unsecured) SRV target (RFC 5922 §4).
    assert targets[0].server_name == "secure.test" and targets[0].name == "tls.secure.test"
    assert "_sip._udp.secure.test" not in stub.asked("SRV")
    # Without a TLS listener a SIPS URI has nowhere to go: never a downgrade to UDP.
    assert await run_locate(stub, "sips:carol@secure.test", available={"udp", "tcp"}) == []
    # A sips: URI with a port and no DNS records other than A: still TLS.
    stub.add("secure.test", "A", ["192.0.2.32"])
    assert places(await run_locate(stub, "sips:carol@secure.test:5999")) == [
        ("tls", "192.0.2.32", 5999)
    ]


async def test_without_naptr_srv_is_asked_per_transport_in_preference_order(
    stub_dns: MakeStub,
) -> None:
    stub = await stub_dns(
        {
            ("_sip._udp.pbx.test", "SRV"): ["0 0 5060 u.pbx.test."],
            ("_sips._tcp.pbx.test", "SRV"): ["0 0 5061 t.pbx.test."],
            ("u.pbx.test", "A"): ["192.0.2.40"],
            ("t.pbx.test", "A"): ["192.0.2.41"],
        }
    )
    targets = await run_locate(stub, "sip:dave@pbx.test")
    assert places(targets) == [("tls", "192.0.2.41", 5061), ("udp", "192.0.2.40", 5060)]
    assert stub.asked("NAPTR") == ["pbx.test"]
    assert sorted(stub.asked("SRV")) == [
        "_sip._tcp.pbx.test",
        "_sip._udp.pbx.test",
        "_sips._tcp.pbx.test",
    ]
    # Only the transports we listen on are asked for.
    stub.queries.clear()
    udp_only = await run_locate(stub, "sip:dave@pbx.test", available={"udp"})
    assert places(udp_only) == [("udp", "192.0.2.40", 5060)]
    assert stub.asked("SRV") == ["_sip._udp.pbx.test"]


async def test_nxdomain_for_naptr_and_srv_falls_back_to_the_hosts_addresses(
    stub_dns: MakeStub,
) -> None:
    stub = await stub_dns({("plain.test", "A"): ["192.0.2.50", "192.0.2.51"]})
    targets = await run_locate(stub, "sip:erin@plain.test")
    # RFC 3263 §4.2: UDP for a sip: URI at its default port, each address in turn (an
    # RRset has no order).
    assert sorted(places(targets)) == [("udp", "192.0.2.50", 5060), ("udp", "192.0.2.51", 5060)]
    assert stub.asked("NAPTR") == ["plain.test"]
    assert len(stub.asked("SRV")) == 3 and stub.asked("A") == ["plain.test"]
    tcp = await run_locate(stub, "sip:erin@plain.test;transport=tcp")
    assert sorted(places(tcp)) == [("tcp", "192.0.2.50", 5060), ("tcp", "192.0.2.51", 5060)]
    # A name that does not exist at all: no target.
    assert await run_locate(stub, "sip:erin@missing.test") == []


async def test_numeric_and_localhost_hosts_are_used_without_any_dns_query(
    stub_dns: MakeStub,
) -> None:
    stub = await stub_dns({})
    assert places(await run_locate(stub, "sip:f@192.0.2.60")) == [("udp", "192.0.2.60", 5060)]
    assert places(await run_locate(stub, "sips:f@192.0.2.60")) == [("tls", "192.0.2.60", 5061)]
    assert places(await run_locate(stub, "sip:f@[2001:db8::60]:5070;transport=tcp")) == [
        ("tcp", "2001:db8::60", 5070)
    ]
    assert places(await run_locate(stub, "sip:f@pbx.test;maddr=192.0.2.61")) == [
        ("udp", "192.0.2.61", 5060)
    ]
    # RFC 6761 §6.3: localhost names are loopback, never a question to a nameserver.
    assert places(await run_locate(stub, "sip:f@localhost;transport=tcp")) == [
        ("tcp", "127.0.0.1", 5060),
        ("tcp", "::1", 5060),
    ]
    only_tcp = await run_locate(stub, "sip:f@192.0.2.60", available={"tcp"})
    assert only_tcp == []  # UDP was chosen and we have no UDP listener
    assert stub.queries == []


def test_srv_weights_choose_in_proportion_within_a_priority() -> None:
    rng = random.Random(3263)
    heavy, light, zero = Srv(1, 90, 1, "heavy"), Srv(1, 10, 1, "light"), Srv(1, 0, 1, "zero")
    backup, dead = Srv(2, 50, 1, "backup"), Srv(0, 0, 1, ".")
    firsts = {"heavy": 0, "light": 0, "zero": 0}
    for _ in range(2000):
        order = srv_order([backup, dead, light, zero, heavy], rng)
        assert order[-1] is backup and dead not in order and len(order) == 4
        firsts[order[0].target] += 1
    assert 1650 < firsts["heavy"] < 1950 and 100 < firsts["light"] < 350
    assert firsts["zero"] < 60  # weight 0: first only when the draw is 0 (RFC 2782)


async def test_tls_to_a_located_address_names_the_domain_not_the_address(tmp_path: Path) -> None:
    """The TLS server name of a target found by DNS is its URI's domain (SNI and the
    certificate check); an address dialled as such has none to send."""
    cert, key = ensure_certificate(tmp_path, names=["pbx.test"])
    ctx = server_context(cert, key)
    names: asyncio.Queue[str | None] = asyncio.Queue()
    ctx.sni_callback = lambda _sock, name, _ctx: names.put_nowait(name)

    async def read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    servers = [await asyncio.start_server(read, "127.0.0.1", 0, ssl=ctx) for _ in range(2)]
    named, plain = (("127.0.0.1", s.sockets[0].getsockname()[1]) for s in servers)
    pool = ConnectionPool(
        lambda m, p: None, lambda e, p: None, client_ssl=client_context(ca_file=cert)
    )
    try:
        pool.name_server(named, "pbx.test")
        assert pool.send("tls", named, b"\r\n\r\n")
        assert await asyncio.wait_for(names.get(), 5.0) == "pbx.test"
        # The control: by address alone, no SNI (RFC 6066 §3 names no IP addresses).
        assert pool.send("tls", plain, b"\r\n\r\n")
        assert await asyncio.wait_for(names.get(), 5.0) is None
    finally:
        await pool.close()
        for server in servers:
            server.close()
            await server.wait_closed()
