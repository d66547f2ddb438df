"""The client's address: the peer's, or what trusted proxies say it is.

Behind a reverse proxy every request comes from the proxy, so login throttling and the audit
log would see one address for everyone. The proxy names the hops in ``X-Forwarded-For`` (or
``Forwarded``, RFC 7239), but anyone can send those headers: they are believed only when the
peer is one of ``trusted_proxies``, and only up to the rightmost hop that is not itself a
trusted proxy (hops left of it were written by the client, or by proxies it chose).
Only the one header the proxy is set to write is read; the other may be the client's forgery.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Literal

from aiohttp import web

ProxyHeader = Literal["X-Forwarded-For", "Forwarded"]


def _parse(address: str) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5``, ``[::1]:5``, ``::1``), or None."""
    text = address.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        parsed = ip_address(text)
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


class ProxyTrust:
    """Which peers may say who the client is, and the client that follows from a request."""

    def __init__(self, proxies: Iterable[str] = (), header: ProxyHeader = "X-Forwarded-For") -> None:
        self._networks: tuple[IPv4Network | IPv6Network, ...] = tuple(ip_network(p, strict=False) for p in proxies)
        self._header = header

    def trusts(self, address: IPv4Address | IPv6Address) -> bool:
        return any(address in network for network in self._networks)

    def client(self, request: web.BaseRequest) -> str | None:
        peer = request.remote
        if not self._networks or peer is None:
            return peer
        nearest = _parse(peer)
        if nearest is None or not self.trusts(nearest):
            return peer
        for hop in reversed(self._hops(request)):
            address = _parse(hop)
            if address is None:
                break  # garbage: nothing left of it can be placed; the last proxy's word stands
            nearest = address
            if not self.trusts(address):
                break
        return str(nearest)

    def _hops(self, request: web.BaseRequest) -> list[str]:
        if self._header == "Forwarded":
            return [hop.get("for", "") for hop in request.forwarded]
        return [hop for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]


PROXY_TRUST = web.AppKey("proxy_trust", ProxyTrust)


def client_address(request: web.Request) -> str | None:
    """The address of whoever sent ``request``: the one place that decides it."""
    return request.config_dict[PROXY_TRUST].client(request)
