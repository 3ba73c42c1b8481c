"""Property: on production settings, an IPv4 address webhooks may not reach is refused however it
is written — dotted, octal, hex, one number, short forms, inside any IPv6 form that carries an
IPv4 address, in a URL's brackets — at submit (generations.webhook_urls) and by the connect-time
guard (workers.webhooks); a public address in its plain forms is taken, and connected to."""

import ipaddress
import socket

import httpcore
import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generations.webhook_urls import AddressRefused, UnusableWebhookURL, address_refusal, webhook_url_check
from workers.webhooks import _GuardedBackend

FORBIDDEN = [
    "127.0.0.0/8",  # loopback
    "10.0.0.0/8",  # private
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",  # link-local: the cloud metadata services
    "100.64.0.0/10",  # shared (CGNAT)
    "0.0.0.0/8",  # unspecified, "this network"
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, broadcast
    "192.0.2.0/24",  # documentation
    "198.18.0.0/15",  # benchmarking
]
PUBLIC = ["8.8.8.0/24", "1.1.1.0/24"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def addresses(networks: list[str]):
    def within(network):
        network = ipaddress.ip_network(network)
        first, last = int(network.network_address), int(network.broadcast_address)
        return st.integers(first, last).map(ipaddress.IPv4Address)

    return st.sampled_from(networks).flatmap(within)


def ipv4_forms(ip: ipaddress.IPv4Address) -> list[str]:
    """How a resolver (inet_aton) can be told `ip`: dotted parts in decimal, octal or hex, one
    number, and the three- and two-part short forms."""
    a, b, c, d = ip.packed
    n = int(ip)
    return [
        str(ip),
        ".".join(f"0{part:o}" for part in (a, b, c, d)),
        ".".join(f"0x{part:x}" for part in (a, b, c, d)),
        f"0{a:o}.{b}.0x{c:x}.{d}",
        str(n),
        f"0x{n:x}",
        f"0{n:o}",
        f"{a}.{b}.{c << 8 | d}",
        f"{a}.{b << 16 | c << 8 | d}",
    ]


def ipv6_forms(ip: ipaddress.IPv4Address) -> list[str]:
    """The IPv6 addresses that carry `ip`."""
    n = int(ip)
    teredo = 0x2001 << 112 | int(ipaddress.IPv4Address("65.54.227.120")) << 64 | 0x8000 << 48
    teredo |= (0xFFFF ^ 40000) << 32 | (0xFFFFFFFF ^ n)  # flags, then port and client, obfuscated
    return [
        f"::{ip}",  # IPv4-compatible
        f"::ffff:{ip}",  # IPv4-mapped
        f"::ffff:0:{ip}",  # IPv4-translated
        str(ipaddress.IPv6Address(0x2002 << 112 | n << 80 | 1)),  # 6to4
        str(ipaddress.IPv6Address(teredo)),
        f"64:ff9b::{ip}",  # NAT64
        f"64:ff9b:1::{ip}",  # local-use NAT64
    ]


@pytest.fixture
def production():
    with override_settings(WEBHOOK_ALLOW_LOOPBACK=False):
        yield


@pytest.fixture
def connections(monkeypatch):
    """The addresses the process tries to connect to, each refused."""
    tried = []

    def create_connection(address, *args, **kwargs):
        tried.append(address[0])
        raise OSError("the test refuses every connection")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return tried


def connect(host: str):
    """The connect-time guard's verdict on `host`: AddressRefused, or an attempt to connect."""
    _GuardedBackend().connect_tcp(host, 443, timeout=1)


@SETTINGS
@given(ip=addresses(FORBIDDEN) | st.just(ipaddress.IPv4Address("169.254.169.254")))
def test_a_forbidden_ipv4_address_is_refused_in_every_form(production, connections, ip):
    dotted, *others = ipv4_forms(ip)
    with pytest.raises(AddressRefused):
        webhook_url_check(f"https://{dotted}/hook")
    for host in others:
        with pytest.raises(UnusableWebhookURL, match=f"write it as {ip}"):
            webhook_url_check(f"https://{host}/hook")
    for host in (dotted, *others):  # stored before the check at submit existed
        with pytest.raises(AddressRefused, match=f"resolves to {ip}:"):
            connect(host)
    for host in ipv6_forms(ip):
        with pytest.raises(AddressRefused):
            webhook_url_check(f"https://[{host}]:8443/hook")
        with pytest.raises(AddressRefused):
            connect(host)
    assert connections == []


@SETTINGS
@given(ip=addresses(PUBLIC))
def test_a_public_ipv4_address_is_taken_in_its_plain_forms(production, connections, ip):
    connections.clear()  # one list for all of hypothesis's examples
    plain = [str(ip), f"::ffff:{ip}", f"64:ff9b::{ip}", str(ipaddress.IPv6Address(0x2002 << 112 | int(ip) << 80 | 1))]
    webhook_url_check(f"https://{ip}/hook")
    for host in plain[1:]:
        webhook_url_check(f"https://[{host}]/hook")
    for host in plain:
        assert address_refusal(host) is None
        with pytest.raises(httpcore.ConnectError):  # let through, to the address checked
            connect(host)
    assert list(map(ipaddress.ip_address, connections)) == list(map(ipaddress.ip_address, plain))


@SETTINGS
@given(ip=addresses(PUBLIC))
def test_a_public_ipv4_address_in_another_numeric_form_is_refused_with_its_plain_form(production, ip):
    for host in ipv4_forms(ip)[1:]:
        with pytest.raises(UnusableWebhookURL, match=f"write it as {ip}"):
            webhook_url_check(f"https://{host}/hook")
