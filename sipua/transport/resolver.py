"""Locating SIP servers (RFC 3263 §4): from a SIP or SIPS URI to the places to send a request.

A URI names a host; what a client needs is a list of (transport, address, port) to try in
turn. RFC 3263 §4.1 picks the transport (from the URI, else NAPTR, else SRV, else UDP for
``sip:`` and TLS for ``sips:``), §4.2 the port and addresses (SRV, else A/AAAA at the
transport's default port), and §4.3 asks for the SRV order of RFC 2782 and for the next
target to be tried when one fails.

DNS goes through dnspython's asyncio resolver. With no resolver given, NAPTR and SRV ask the
system's nameservers (``/etc/resolv.conf``) and addresses come from ``getaddrinfo``, so names
in ``/etc/hosts`` resolve as they always did; a resolver that is given (tests, or a deployment
with its own nameservers) answers every lookup, addresses included. Numeric hosts and
``localhost`` never reach a nameserver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from sipua.sip.uri import SipUri

from .routing import DEFAULT_PORTS

log = logging.getLogger(__name__)

TRANSPORTS = frozenset(DEFAULT_PORTS)
# The order SRV lookups are tried in when nothing chose a transport: secure first, then the
# congestion-controlled one (RFC 3263 §4.1 leaves the preference to the client).
TRANSPORT_PREFERENCE = ("tls", "tcp", "udp")
# RFC 3263 §4.1: the NAPTR services of SIP, and the transports they stand for.
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send a request to: ``host`` is an IP address, ready for a socket.

    ``name`` is the DNS name the address was found under (an SRV target, or the URI's host);
    ``domain`` is the URI's host. TLS checks the server against ``domain``, not ``name``
    (RFC 5922 §4): NAPTR and SRV answers are not secured, so a forged SRV target must not
    be able to choose the name its certificate has to match. Both are None for a numeric
    host.
    """

    transport: str
    host: str
    port: int
    name: str | None = None
    domain: str | None = None

    @property
    def server_name(self) -> str | None:
        """The name to send as TLS SNI and to match in the server's certificate."""
        return self.domain


@dataclass(frozen=True, slots=True)
class Srv:
    """One SRV record (RFC 2782), with its target as text without the final dot."""

    priority: int
    weight: int
    port: int
    target: str


def uri_transport(uri: SipUri, explicit: str | None = None) -> str | None:
    """The transport that the URI or the configuration fixes, or None when DNS is to choose.

    RFC 3263 §4.1: a SIPS URI means TLS whatever else it says; then a ``transport``
    parameter; ``explicit`` is the transport a provider's configuration names.
    """
    if uri.secure:
        return "tls"
    if uri.transport in TRANSPORTS:
        return uri.transport
    if explicit in TRANSPORTS:
        return explicit
    return None


def default_transport(uri: SipUri) -> str:
    """RFC 3263 §4.1: with nothing else to go on, UDP for ``sip:`` and TLS for ``sips:``."""
    return "tls" if uri.secure else "udp"


def numeric_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def locate(
    uri: SipUri,
    *,
    transports_available: set[str],
    explicit_transport: str | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
    rng: random.Random | None = None,
) -> list[Target]:
    """The targets for ``uri`` in the order to try them (RFC 3263 §4); [] when there are none.

    Only targets on ``transports_available`` (those we have listeners for) are returned.
    ``resolver`` answers the DNS questions (see the module's docstring for None); ``rng``
    makes the weighted SRV choice repeatable in tests.
    """
    rng = rng or random.SystemRandom()
    host = _bare(uri.maddr) if uri.maddr else uri.host_bare  # RFC 3263 §4.1: maddr first
    fixed = uri_transport(uri, explicit_transport)
    if numeric_host(host):
        # RFC 3263 §4.1-4.2: an IP address is used as it is; no DNS at all.
        transport = fixed or default_transport(uri)
        if transport not in transports_available:
            return []
        return [Target(transport, host, uri.port or DEFAULT_PORTS[transport])]
    domain = uri.host_bare.lower()
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        # RFC 6761 §6.3: loopback, without asking any nameserver.
        transport = fixed or default_transport(uri)
        if transport not in transports_available:
            return []
        port = uri.port or DEFAULT_PORTS[transport]
        return [Target(transport, a, port, host, domain) for a in ("127.0.0.1", "::1")]
    lookup = _Lookup(resolver)
    if uri.port is not None:
        # RFC 3263 §4.2: an explicit port skips NAPTR and SRV; the host's addresses at it.
        transport = fixed or default_transport(uri)
        if transport not in transports_available:
            return []
        return await lookup.address_targets(transport, host, uri.port, domain)
    if fixed is not None:
        # RFC 3263 §4.2: a known transport and no port: SRV for that transport, else A/AAAA.
        if fixed not in transports_available:
            return []
        records = await lookup.srv(f"{SRV_PREFIXES[fixed]}.{host}")
        if records:
            return await lookup.srv_targets(fixed, srv_order(records, rng), domain)
        return await lookup.address_targets(fixed, host, DEFAULT_PORTS[fixed], domain)
    # RFC 3263 §4.1: a SIPS URI is reached over TLS only; a SIP URI may use any of ours.
    wanted = [
        t
        for t in TRANSPORT_PREFERENCE
        if t in transports_available and (t == "tls" or not uri.secure)
    ]
    targets: list[Target] = []
    for transport, replacement in await lookup.naptr(host, set(wanted)):
        records = await lookup.srv(replacement)
        targets += await lookup.srv_targets(transport, srv_order(records, rng), domain)
    if targets:
        return _unique_targets(targets)
    # RFC 3263 §4.1: no (usable) NAPTR: an SRV query for each transport we support.
    found = await asyncio.gather(*(lookup.srv(f"{SRV_PREFIXES[t]}.{host}") for t in wanted))
    for transport, records in zip(wanted, found, strict=True):
        targets += await lookup.srv_targets(transport, srv_order(records, rng), domain)
    if targets:
        return _unique_targets(targets)
    # RFC 3263 §4.2: neither NAPTR nor SRV: the host's addresses at the default port.
    transport = default_transport(uri)
    if transport not in transports_available:
        return []
    return await lookup.address_targets(transport, host, DEFAULT_PORTS[transport], domain)


def srv_order(records: Iterable[Srv], rng: random.Random) -> list[Srv]:
    """SRV records in the order to try them (RFC 2782): by priority, lowest first; within a
    priority by a weighted random choice, repeated over the records not yet chosen.

    A target of "." says the service is decidedly not available there, and is left out.
    """
    usable = [r for r in records if r.target not in ("", ".")]
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in usable}):
        # RFC 2782: weight-0 records first, so they are picked only when the draw is 0.
        group = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            draw = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for i, record in enumerate(group):
                running += record.weight
                if running >= draw:
                    ordered.append(group.pop(i))
                    break
    return ordered


class _Lookup:
    """The DNS questions of one :func:`locate`, with failures read as "no records"."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None) -> None:
        self.addresses_by_dns = resolver is not None
        if resolver is None:
            try:
                resolver = dns.asyncresolver.get_default_resolver()
            except dns.resolver.NoResolverConfiguration:
                log.info("no DNS configuration: no NAPTR or SRV lookups")
        self.resolver = resolver

    async def _query(self, name: str, rdtype: str) -> Sequence:
        if self.resolver is None:
            return []
        try:
            answer = await self.resolver.resolve(name, rdtype)
        except dns.exception.DNSException as e:
            # NXDOMAIN, no answer, no nameserver, timeout: RFC 3263 goes on to the next step.
            log.debug("DNS %s %s: %s", rdtype, name, type(e).__name__)
            return []
        return list(answer)

    async def naptr(self, host: str, transports: set[str]) -> list[tuple[str, str]]:
        """(transport, SRV name) of the host's NAPTR records that lead to ``transports``
        (for a SIPS URI, TLS alone), in order."""
        usable = []
        for record in await self._query(host, "NAPTR"):
            service = record.service.decode("ascii", "replace").upper()
            transport = NAPTR_SERVICES.get(service)
            if (
                transport not in transports
                or record.flags.decode("ascii", "replace").lower() != "s"
            ):
                continue  # RFC 3263 §4.1: not SIP, not a transport we have, or not to SRV
            usable.append((record.order, record.preference, transport, _text(record.replacement)))
        usable.sort(key=lambda u: (u[0], u[1]))  # RFC 3403 §4.1: order, then preference
        return [(transport, name) for _, _, transport, name in usable]

    async def srv(self, name: str) -> list[Srv]:
        records = await self._query(name, "SRV")
        return [Srv(r.priority, r.weight, r.port, _text(r.target)) for r in records]

    async def srv_targets(self, transport: str, records: list[Srv], domain: str) -> list[Target]:
        """The addresses of each SRV target, in the records' order (RFC 3263 §4.2)."""
        found = await asyncio.gather(*(self.addresses(r.target) for r in records))
        return [
            Target(transport, address, record.port, record.target, domain)
            for record, addresses in zip(records, found, strict=True)
            for address in addresses
        ]

    async def address_targets(
        self, transport: str, host: str, port: int, domain: str
    ) -> list[Target]:
        return [Target(transport, a, port, host, domain) for a in await self.addresses(host)]

    async def addresses(self, name: str) -> list[str]:
        """IPv4 addresses first, then IPv6 (through the system resolver unless one was given)."""
        if not self.addresses_by_dns:
            return await _system_addresses(name)
        v4, v6 = await asyncio.gather(self._query(name, "A"), self._query(name, "AAAA"))
        return _unique([r.address for r in v4] + [r.address for r in v6])


async def _system_addresses(name: str) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as e:
        log.debug("getaddrinfo %s: %s", name, e)
        return []
    found = [i[4][0] for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)]
    return _unique(sorted(found, key=lambda a: ":" in a))


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _bare(host: str) -> str:
    return host[1:-1] if host[:1] == "[" else host


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _unique_targets(targets: Iterable[Target]) -> list[Target]:
    """Each (transport, address, port) once, at its first place: two NAPTR records or two
    SRV targets may lead to the same server."""
    seen: dict[tuple[str, str, int], Target] = {}
    for t in targets:
        seen.setdefault((t.transport, t.host, t.port), t)
    return list(seen.values())
