"""Where a webhook may be sent: resolve the host and refuse the server's own networks (SSRF)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class AddressRefused(Exception):
    """The URL may not receive webhooks; the message says why."""


def resolve(host: str, port: int) -> list[str]:
    """Return every address the host name resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"the host name {host!r} does not resolve") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    # is_global is false for private, loopback, link-local, shared (100.64/10), reserved,
    # documentation and unspecified ranges; multicast is never a web server.
    return ip.is_global and not ip.is_multicast


def url_target(url: str) -> tuple[str, int, list[str]]:
    """Check a webhook URL; return its host, port and the addresses it may be sent to.

    Production (WEBHOOK_ALLOW_PRIVATE_ADDRESSES off) refuses a URL if any address its host
    resolves to is not public, and sends only to the addresses checked here.
    """
    parts = urlsplit(url)
    allowed_schemes = {"https"} if settings.WEBHOOK_REQUIRE_HTTPS else {"https", "http"}
    if parts.scheme not in allowed_schemes:
        raise AddressRefused(f"the URL must use {' or '.join(sorted(allowed_schemes))}")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    if parts.username or parts.password:
        raise AddressRefused("the URL may not hold a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("the URL's port is not a number from 0 to 65535") from None
    addresses = resolve(parts.hostname, port)
    if not addresses:
        raise AddressRefused(f"the host name {parts.hostname!r} does not resolve")
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            raise AddressRefused(
                f"{parts.hostname} resolves to an address on a private, loopback or "
                f"link-local network ({', '.join(refused)})"
            )
    return parts.hostname, port, addresses
