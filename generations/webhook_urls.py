"""Where a webhook may go: the rules for its URL, checked when a generation is submitted and again
by every attempt, and for the addresses it may reach, checked on every address an attempt
connects to (workers.webhooks). Here, below both, so the two judge by the same rules.

A URL is usable as written or not at all — never rewritten: http(s), a host, no credentials, a
port from 1 to 65535, and a host the sender can encode — a name whose IDNA form (the `idna`
package's, as httpx's) has labels of 1–63 letters, digits, hyphens or underscores and at most 253
characters, an IPv4 address as four decimal numbers, or an IPv6 address in brackets without a
zone id. A host whose last label is a number is an IPv4 address to a resolver (`0177.0.0.1`,
`0x7f.1`, `127.1`, `2130706433` are all 127.0.0.1 to getaddrinfo), so any other numeric form is
refused, with the address it stands for in the message.

A literal address is judged by the address rules at once; a host name only by each attempt, on
what it resolves to then (a check at submit would prove nothing about delivery time).
"""

import ipaddress
import re
import socket
from urllib.parse import urlsplit

import httpx
import idna
from django.conf import settings

WEBHOOK_URL_MAX_LENGTH = 2048
_LABEL = re.compile(r"[a-z0-9_-]+")
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")  # what a resolver (inet_aton) reads as a number
# IPv6 ranges whose last 32 bits are an IPv4 address the packets go to: IPv4-compatible
# (::a.b.c.d, deprecated), IPv4-translated (::ffff:0:a.b.c.d) and the well-known NAT64 prefix.
_IPV4_IN_LAST_32_BITS = tuple(map(ipaddress.ip_network, ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")))
# Local-use NAT64 (RFC 8215): where the IPv4 part sits depends on the operator's prefix length,
# and nothing in it is reachable from the Internet at large.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UnusableWebhookURL(ValueError):
    """A webhook_url no attempt can send to; the message says why."""


class AddressRefused(UnusableWebhookURL):
    """The URL's host is, or resolves to, an address no webhook may reach; nothing was sent."""


def webhook_url_check(url: str) -> None:
    """Raise UnusableWebhookURL unless an attempt can send to `url` as written — AddressRefused
    when its host is a literal address the address rules refuse."""
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        raise UnusableWebhookURL(f"webhook_url is longer than {WEBHOOK_URL_MAX_LENGTH} characters")
    if not url.isprintable() or " " in url:
        raise UnusableWebhookURL("webhook_url must have no spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # unbalanced brackets, IPv4 in brackets, characters that normalise to a delimiter
        raise UnusableWebhookURL(f"webhook_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnusableWebhookURL("webhook_url must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise UnusableWebhookURL("webhook_url must have no credentials (user:password@)")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise UnusableWebhookURL("webhook_url's port must be a number from 1 to 65535")
    address = _literal_address(parts.hostname, bracketed=parts.netloc.startswith("["))
    try:
        httpx.URL(url)  # the sender's own parser has the last word
    except httpx.InvalidURL as exc:
        raise UnusableWebhookURL(f"webhook_url cannot be sent to: {exc}") from exc
    reason = address_refusal(parts.hostname) if address is not None else None  # named as written
    if reason:
        raise AddressRefused(f"webhook_url's host {reason}")


def _literal_address(host: str, *, bracketed: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` (urlsplit's: lower case, no brackets) is written as, or None for a
    name; UnusableWebhookURL when the sender could not use it."""
    if bracketed:
        if "%" in host:
            raise UnusableWebhookURL("webhook_url's IPv6 host has a zone id (%…), which names a local interface")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnusableWebhookURL(f"webhook_url's host [{host}] is not an IPv6 address") from None
    if not host.isascii():
        try:
            host = idna.encode(host).decode("ascii")  # as httpx encodes it
        except (idna.IDNAError, UnicodeError) as exc:
            raise UnusableWebhookURL(f"webhook_url's host is not a valid internationalised name: {exc}") from None
    if len(host.removesuffix(".")) > 253:
        raise UnusableWebhookURL("webhook_url's host is longer than 253 characters")
    labels = host.removesuffix(".").split(".")
    if _NUMBER.fullmatch(labels[-1]):
        return _ipv4(host)
    for label in labels:
        if not label:
            raise UnusableWebhookURL(f"webhook_url's host {host} has an empty label (two dots in a row)")
        if len(label) > 63:
            raise UnusableWebhookURL(f"webhook_url's host has a label longer than 63 characters: {label[:20]}…")
        if not _LABEL.fullmatch(label):
            raise UnusableWebhookURL(
                f"webhook_url's host {host} may only hold letters, digits, hyphens and underscores between its dots"
            )
    return None


def _ipv4(host: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(host)  # four decimal numbers, no leading zeros
    except ValueError:
        pass
    try:
        read = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        raise UnusableWebhookURL(f"webhook_url's host {host} is not an IPv4 address") from None
    raise UnusableWebhookURL(
        f"webhook_url's host {host} is the IPv4 address {read} in another form: write it as {read}"
    )


def address_refusal(address: str) -> str | None:
    """Why a webhook may not be sent to `address`, or None when it may.

    Only public unicast addresses may receive one — not private (unique-local fd00:ec2::254 among
    them), shared (CGNAT), link-local (169.254.169.254 among them: with the former, the cloud
    metadata services), multicast, reserved or unspecified ones — and loopback only with
    WEBHOOK_ALLOW_LOOPBACK. An IPv6 address that carries an IPv4 one is judged by that one too:
    Python reports `::127.0.0.1` or `::ffff:0:7f00:1` global, yet the packets go to 127.0.0.1.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id (fe80::1%eth0) is no part of it
    if ip.version == 6 and ip in _NAT64_LOCAL:
        return f"{address} is in the local-use NAT64 prefix {_NAT64_LOCAL}"
    for candidate in (ip, *embedded_ipv4(ip)):
        carried = "" if candidate is ip else f" (it carries {candidate})"
        if candidate.is_loopback:
            if settings.WEBHOOK_ALLOW_LOOPBACK:
                continue
            return f"{address} is a loopback address{carried}"
        if candidate.is_multicast or not candidate.is_global:
            return f"{address} is not a public unicast address{carried}"
    return None


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, -compatible and -translated,
    6to4, Teredo (its server and its client) and NAT64. `::` and `::1` are IPv6's own
    unspecified and loopback addresses, not IPv4-compatible ones."""
    if ip.version != 6:
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if int(ip) > 1 and any(ip in network for network in _IPV4_IN_LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]
