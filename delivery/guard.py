"""The SSRF guard: which destinations the service may connect to.

Two checks, one rule (:func:`is_forbidden`: only globally routable addresses are allowed):

- :func:`check_url` runs when a destination is created and before every send. It looks at the
  URL alone: a literal IP address, a numeric IPv4 shorthand, or a ``localhost`` name. It never
  resolves names.
- :class:`GuardedResolver` runs when aiohttp resolves a name at send time. It refuses the whole
  answer if any address in it is forbidden, and aiohttp then connects only to the addresses it
  returned, so the checked address is the one connected to (no DNS rebinding between check and
  connect). aiohttp does not call the resolver for literal IP hosts: those are
  :func:`check_url`'s job.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from delivery.errors import BlockedDestination

__all__ = ["GuardedResolver", "IPAddress", "check_url", "is_forbidden"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that are not globally reachable (IANA special-purpose registries) but that
# Python 3.11's ``is_global`` still reports as global. The whole IETF protocol block goes,
# including its two anycast services (PCP, TURN), which are no webhook receivers.
_EXTRA_FORBIDDEN_V4 = ipaddress.IPv4Network("192.0.0.0/24")
_EXTRA_FORBIDDEN_V6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 SIDs (RFC 9602)
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_forbidden(address: IPAddress) -> bool:
    """Return True unless ``address`` is a globally routable unicast address.

    Forbidden: loopback, private, link-local (cloud metadata included), CGNAT, multicast,
    reserved, unspecified, broadcast, documentation and benchmark ranges, and the IPv6
    site-local, Teredo and IPv4-compatible forms. IPv4-mapped and NAT64 (64:ff9b::/96)
    addresses are judged by the IPv4 address they carry; 6to4 addresses by both.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _is_forbidden_v4(address)
    if address.ipv4_mapped is not None:
        return _is_forbidden_v4(address.ipv4_mapped)
    if address in _NAT64:
        return _is_forbidden_v4(_low_ipv4(address))
    return _is_forbidden_v6(address) or any(map(_is_forbidden_v4, _embedded_ipv4(address)))


def _is_forbidden_v4(address: ipaddress.IPv4Address) -> bool:
    # is_global alone misses multicast in 3.11; the other flags keep the answer the same
    # on Python versions whose is_global differs.
    return (
        not address.is_global
        or address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address in _EXTRA_FORBIDDEN_V4
    )


def _is_forbidden_v6(address: ipaddress.IPv6Address) -> bool:
    # is_global misses multicast, site-local and a few newer ranges in 3.11.
    return (
        not address.is_global
        or address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_site_local
        or address.is_unspecified
        or address in _IPV4_COMPATIBLE
        or any(address in network for network in _EXTRA_FORBIDDEN_V6)
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> Iterator[ipaddress.IPv4Address]:
    """Yield every IPv4 address a transition mechanism would route ``address`` to."""
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield from address.teredo


def _low_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)


def check_url(url: str) -> None:
    """Refuse a URL whose host is forbidden without resolving it.

    Raises :class:`BlockedDestination` when the host is ``localhost`` or ends in
    ``.localhost``, when it is a literal IP address (IPv6 in brackets included) that
    :func:`is_forbidden` refuses, or when it is a numeric IPv4 shorthand such as ``127.1``,
    ``2130706433`` or ``0x7f.1`` (which resolvers read as an address; aiohttp refuses them
    too). Other names pass: they are checked when resolved, by :class:`GuardedResolver`.
    A URL without a host passes (it reaches no address). Raises ``ValueError`` if yarl cannot
    parse the URL.
    """
    parsed = URL(url)
    if parsed.raw_host is None:
        return
    # yarl gives the IDNA form in raw_host (what gets resolved) and the decoded form in host
    # (which keeps an IPv6 zone id readable); a trailing dot only marks the name absolute.
    for host in dict.fromkeys((parsed.raw_host, parsed.host or parsed.raw_host)):
        _check_host(host.rstrip(".").lower())


def _check_host(host: str) -> None:
    if host == "localhost" or host.endswith(".localhost"):
        raise BlockedDestination(host, host, "is a loopback name")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        _check_numeric_shorthand(host)
        return
    if is_forbidden(address):
        raise BlockedDestination(host, str(address))


def _check_numeric_shorthand(host: str) -> None:
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return  # an ordinary name
    address = ipaddress.IPv4Address(packed)
    raise BlockedDestination(host, str(address), "is written in a non-canonical numeric form")


class GuardedResolver(AbstractResolver):
    """A resolver that refuses names resolving to any forbidden address.

    Wraps ``inner`` (by default aiohttp's ``DefaultResolver``, created here, so construct this
    inside a running event loop). ``resolve`` returns the inner answer unchanged, or raises
    :class:`BlockedDestination` if any address in it is forbidden or unparseable: one bad
    record refuses them all, which defeats mixed-record DNS rebinding. Resolver errors
    (``socket.gaierror``) propagate as they are. ``close`` closes ``inner`` only if this
    resolver created it.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._owns_inner = inner is None
        self._inner: AbstractResolver = DefaultResolver() if inner is None else inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` with the inner resolver and check every address it returns."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            _check_resolved(host, result["host"])
        return results

    async def close(self) -> None:
        """Release the inner resolver if this resolver created it."""
        if self._owns_inner:
            await self._inner.close()


def _check_resolved(host: str, resolved: str) -> None:
    try:
        address = ipaddress.ip_address(resolved)
    except ValueError:
        # fail closed: an answer we cannot read is an answer we cannot vouch for
        raise BlockedDestination(host, resolved, "is not a readable IP address") from None
    if is_forbidden(address):
        raise BlockedDestination(host, str(address))
