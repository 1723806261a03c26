"""Address lists: which source addresses may reach sipua (CIDR, IPv4 and IPv6).

An :class:`AddressList` answers ``ip in allowlist`` for the textual addresses the
transports report. An IPv4 address seen through an IPv6 socket
(``::ffff:192.0.2.1``) is matched as the IPv4 address it is, so one list entry
covers both kinds of listener; a scope id (``fe80::1%eth0``) is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["AddressList", "parse_address", "parse_network"]


def parse_network(text: str) -> IPNetwork:
    """A CIDR network (``10.0.0.0/8``, ``2001:db8::/32``) or a single address.

    Host bits are allowed (``10.1.2.3/8`` means ``10.0.0.0/8``), as operators write them.
    Raises ValueError naming the entry.
    """
    if not isinstance(text, str):
        raise ValueError(f"not an address or network: {text!r}")
    value = text.strip()
    if value.startswith("[") and "]" in value:
        # "[2001:db8::1]" or "[2001:db8::]/32"
        inner, _, rest = value[1:].partition("]")
        value = inner + rest
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR network: {text!r}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def parse_address(text: str) -> IPAddress | None:
    """The address in ``text`` (IPv4-mapped IPv6 made IPv4), or None if it is not one."""
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    value = value.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressList:
    """A set of networks; ``ip in the_list`` is true when any network holds ``ip``.

    An empty list holds nothing; callers decide what "no list configured" means
    (for the global allowlist it means everyone may connect). Lookups are cached
    (bounded), since the same few peers send nearly all the traffic.
    """

    _CACHE_SIZE = 4096

    def __init__(self, networks: Iterable[str | IPNetwork] = ()) -> None:
        parsed: list[IPNetwork] = []
        for entry in networks:
            network = entry if isinstance(entry, IPNetwork) else parse_network(entry)
            if network not in parsed:
                parsed.append(network)
        self.networks: tuple[IPNetwork, ...] = tuple(parsed)
        self._v4 = tuple(n for n in parsed if n.version == 4)
        self._v6 = tuple(n for n in parsed if n.version == 6)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)

    def __iter__(self):
        return iter(self.networks)

    def __repr__(self) -> str:
        return f"AddressList({[str(n) for n in self.networks]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddressList) and set(self.networks) == set(other.networks)

    def __hash__(self) -> int:
        return hash(frozenset(self.networks))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, str):
            return False
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        address = parse_address(ip)
        if address is None:
            found = False
        elif address.version == 4:
            found = any(address in n for n in self._v4)
        else:
            found = any(address in n for n in self._v6)
        if len(self._cache) >= self._CACHE_SIZE:
            self._cache.clear()
        self._cache[ip] = found
        return found

    def as_strings(self) -> list[str]:
        return [str(n) for n in self.networks]
