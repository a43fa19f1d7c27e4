"""Which hosts outbound HTTP may reach: public ones, plus an explicit allow-list.

A configured ``base_url`` (or a redirect, or a DNS answer) pointing at
169.254.169.254, 127.0.0.1:6379 or a 10.x box would let whoever controls the
setting or the name read the cloud metadata service or internal systems
through the hub (server-side request forgery).  :class:`OutboundPolicy` says no
to every address that is not globally routable - loopback, private, link-local,
shared (CGNAT), multicast, reserved - unless the site setting
``http.allowed_private_hosts`` lists the host name, the address or a network
containing it (emulators, tests and on-premise CRMs).

Pure :mod:`ipaddress` logic without I/O: :mod:`hub.sdk.http` applies it to the
address each connection is made to, the configuration to its settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: The site setting that widens the policy (named in every refusal).
SETTING = "http.allowed_private_hosts"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def parse_entry(entry: str) -> IPNetwork | str:
    """One allow-list entry: an address or CIDR network, else a host name (lower case).

    Raises ValueError for anything else (a URL, a port, a network with host bits set).
    """
    text = entry.strip().removeprefix("[").removesuffix("]") if isinstance(entry, str) else ""
    if not text:
        raise ValueError(f"{entry!r} is not a host, address or CIDR network")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "/" in text or text.replace(".", "").isdigit() or ":" in text:
            raise ValueError(f"{entry!r} is not an address or CIDR network ({exc})") from None
    name = text.lower().rstrip(".")
    if not _HOSTNAME.fullmatch(name):
        raise ValueError(f"{entry!r} is not a host name, address or CIDR network (no scheme, port or path)")
    return name


def address_of(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv4-mapped IPv6 unwrapped, zone dropped), or None for a name."""
    try:
        ip = ipaddress.ip_address(text.removeprefix("[").removesuffix("]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address reach it: ::ffff:127.0.0.1 (mapped),
        # 2002:7f00:1:: (6to4) and 64:ff9b::7f00:1 (NAT64) all mean 127.0.0.1.
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _kind(ip: IPAddress) -> str:
    for kind in ("loopback", "link-local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind.replace('-', '_')}"):
            return kind
    return "non-public"


def is_public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class OutboundPolicy:
    """Public addresses, plus the networks and host names of the allow-list."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def allowing(cls, entries: Iterable[str] = ()) -> OutboundPolicy:
        """A policy from ``http.allowed_private_hosts`` entries (ValueError for a bad one)."""
        parsed = [parse_entry(e) for e in entries]
        return cls(networks=tuple(p for p in parsed if not isinstance(p, str)),
                   hosts=frozenset(p for p in parsed if isinstance(p, str)))

    def widened(self, entries: Iterable[str]) -> OutboundPolicy:
        more = OutboundPolicy.allowing(entries)
        return OutboundPolicy(networks=self.networks + more.networks, hosts=self.hosts | more.hosts)

    def refusal(self, host: str, address: str | IPAddress) -> str | None:
        """Why connecting to ``address`` (what ``host`` resolved to) is refused, or None when allowed."""
        ip = address if not isinstance(address, str) else address_of(address)
        if ip is None:
            return f"{host}: {address!r} is not an IP address"
        if is_public(ip):
            return None
        name = host.lower().rstrip(".").removeprefix("[").removesuffix("]")
        if name in self.hosts or any(ip.version == n.version and ip in n for n in self.networks):
            return None
        shown = host if str(ip) == name else f"{host} ({ip})"
        return (f"{shown} is a {_kind(ip)} address; outbound requests go to public hosts only, "
                f"unless {SETTING} lists it")

    def url_refusal(self, url: str) -> str | None:
        """Why ``url`` is refused without resolving it (literal addresses and ``localhost``), or None.

        Used at start-up: a host name is only known to be private once it is
        resolved, which the connection does (and checks) at request time.
        """
        host = urlsplit(url).hostname
        if not host:
            return None
        ip = address_of(host)
        if ip is None and (host == "localhost" or host.endswith(".localhost")):
            ip = ipaddress.ip_address("127.0.0.1")
        return self.refusal(host, ip) if ip is not None else None


#: What a client built without a policy enforces: public hosts only.
STRICT = OutboundPolicy()

__all__ = ["SETTING", "STRICT", "OutboundPolicy", "address_of", "is_public", "parse_entry"]
