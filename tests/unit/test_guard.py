"""The SSRF guard: which addresses, URLs and resolver answers are refused."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.errors import BlockedDestination
from delivery.guard import GuardedResolver, IPAddress, check_url, is_forbidden
from tests.fakes import StaticResolver

FORBIDDEN = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.1.2.3",  # private
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # link-local: cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "0.0.0.0",  # unspecified
    "0.1.2.3",  # "this network"
    "255.255.255.255",  # broadcast
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "192.0.0.8",  # IETF protocol assignments
    "192.0.0.9",
    "::1",  # IPv6 loopback
    "::",  # IPv6 unspecified
    "fc00::1",  # unique local
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "fec0::1",  # site-local (deprecated)
    "ff02::1",  # multicast
    "ff0e::1",
    "2001:db8::1",  # documentation
    "3fff::1",
    "100::1",  # discard-only
    "2001::1",  # Teredo
    "5f00::1",  # SRv6
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.128.0.1",  # just past CGNAT
    "172.32.0.1",  # just past 172.16/12
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped global
    "2002:808:808::1",  # 6to4 of a global address
    "64:ff9b::808:808",  # NAT64 of a global address
]


@pytest.mark.parametrize("text", FORBIDDEN)
def test_non_global_addresses_are_forbidden(text: str) -> None:
    """Every address that is not globally routable, in any IPv4 or IPv6 form, is forbidden."""
    assert is_forbidden(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ALLOWED)
def test_global_addresses_are_allowed(text: str) -> None:
    """Globally routable addresses, and IPv6 forms embedding one, are allowed."""
    assert not is_forbidden(ipaddress.ip_address(text))


def _addresses_in(*cidrs: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    networks = [ipaddress.IPv4Network(cidr) for cidr in cidrs]
    return st.sampled_from(networks).flatmap(
        lambda net: st.integers(0, net.num_addresses - 1).map(lambda i: net[i])
    )


_ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(_addresses_in("10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"))
def test_private_loopback_link_local_and_their_ipv6_forms_are_forbidden(
    address: ipaddress.IPv4Address,
) -> None:
    """An address in these ranges is forbidden as IPv4, IPv4-mapped, 6to4 and NAT64 alike."""
    packed = int(address)
    forms: list[IPAddress] = [
        address,
        ipaddress.IPv6Address(0xFFFF_0000_0000 | packed),
        ipaddress.IPv6Address((0x2002 << 112) | (packed << 80)),
        ipaddress.IPv6Address((0x0064_FF9B << 96) | packed),
    ]
    assert all(is_forbidden(form) for form in forms)


@given(_ipv4)
def test_ipv4_mapped_form_is_judged_like_the_ipv4_address(address: ipaddress.IPv4Address) -> None:
    """Mapping an IPv4 address into ::ffff:0:0/96 never changes the verdict."""
    mapped = ipaddress.IPv6Address(0xFFFF_0000_0000 | int(address))
    assert is_forbidden(mapped) == is_forbidden(address)


@given(_ipv4)
def test_forbidden_ipv4_stays_forbidden_behind_6to4(address: ipaddress.IPv4Address) -> None:
    """A 6to4 address carrying a forbidden IPv4 address is itself forbidden."""
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80) | 1)
    if is_forbidden(address):
        assert is_forbidden(sixtofour)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]:8080/",
        "http://[fe80::1%25eth0]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/",
        "http://LOCALHOST.:9000/",
        "http://foo.localhost/",
        "https://user:secret@10.0.0.5/hook",
        "http://127.0.0.1./",
        "http://127.1/",  # numeric shorthands resolvers read as 127.0.0.1
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
    ],
)
def test_check_url_refuses_forbidden_literal_hosts_and_localhost(url: str) -> None:
    """A URL naming a forbidden address or a localhost name is refused without any lookup."""
    with pytest.raises(BlockedDestination):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://hooks.example.com:8443/path?q=1",
        "http://8.8.8.8/",
        "http://[2606:4700:4700::1111]/",
        "http://localhost.example.com/",
        "http://10.0.0.1.nip.io/",  # a name: checked when resolved, not here
    ],
)
def test_check_url_allows_public_literals_and_names(url: str) -> None:
    """Public literal addresses and names pass the creation-time check."""
    check_url(url)


def test_blocked_destination_names_host_and_address() -> None:
    """The refusal says which host was refused and which address made it so."""
    with pytest.raises(BlockedDestination) as caught:
        check_url("http://[::ffff:169.254.169.254]/")
    assert caught.value.host == "::ffff:a9fe:a9fe"
    assert "::ffff:a9fe:a9fe" in str(caught.value)


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["93.184.216.34", "127.0.0.1"],  # mixed records: one bad one refuses all
        ["2606:4700:4700::1111", "fd00::1"],
        ["93.184.216.34", "not-an-address"],
    ],
)
async def test_resolver_refuses_an_answer_with_any_forbidden_address(
    addresses: list[str],
) -> None:
    """A name whose answer holds any forbidden or unreadable address is refused whole."""
    resolver = GuardedResolver(StaticResolver({"rebind.example": addresses}))
    with pytest.raises(BlockedDestination) as caught:
        await resolver.resolve("rebind.example", 80)
    assert caught.value.host == "rebind.example"


async def test_resolver_passes_a_public_answer_through_unchanged() -> None:
    """A name resolving only to public addresses gets the inner resolver's answer as is."""
    inner = StaticResolver({"example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    answer = await GuardedResolver(inner).resolve("example.com", 443)
    assert answer == await inner.resolve("example.com", 443)


async def test_resolver_lets_lookup_failures_through() -> None:
    """A name that does not resolve fails with the resolver's own error, not a refusal."""
    resolver = GuardedResolver()
    try:
        with pytest.raises(socket.gaierror):
            await resolver.resolve("nonexistent.invalid", 80)
    finally:
        await resolver.close()
