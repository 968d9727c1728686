"""Requests to addresses a model or a tenant chooses: never to the inside of the network.

Redis and PostgreSQL trust loopback, the API's ``/metrics`` is open, and a
cloud's metadata service answers anyone on the host, so a request whose URL
a model wrote (``url_fetch``; later webhooks and MCP server URLs) must not
reach them. ``guarded_get``:

- resolves the URL's host itself and refuses when any address it resolves
  to is not a global unicast address: loopback, private (RFC 1918, unique
  local), link-local (metadata services live at 169.254.169.254), CGNAT
  (100.64/10), unspecified, multicast, reserved, documentation ranges, and
  IPv6 forms that embed such an IPv4 address (mapped, NAT64, 6to4, Teredo),
  unless ``BOBBIN_URL_FETCH_ALLOW`` names the host or a network holding the
  address;
- connects to the address it checked (the URL's host replaced by it; the
  ``Host`` header and TLS's server name keep the name), so a second DNS
  answer cannot slip another address in between check and connect;
- follows redirects itself, checking each hop the same way.

Its client is its own, built per request without proxies from the
environment; the providers' pools are not filtered (local model servers live
on loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_REDIRECTS = 5
# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64, IPv4-compatible
# and IPv4-translated (``ipv4_mapped``, 6to4 and Teredo have their own properties).
_EMBEDDING_IPV4 = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")
)
# Not global, yet ``is_global`` says so: local-use NAT64 and deprecated site-local.
_INTERNAL_IPV6 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "fec0::/10"))


class OutboundRefused(Exception):
    """The request would reach an address it may not: the message says which and why."""


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system's resolver, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_internal(ip: IPAddress) -> bool:
    """Whether ``ip`` is anything but a global unicast address (embedded IPv4 included)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _INTERNAL_IPV6):
            return True
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and any(ip in network for network in _EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and is_internal(embedded):
            return True
    return not ip.is_global or ip.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    """Which internal destinations an operator allows (``BOBBIN_URL_FETCH_ALLOW``)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=resolve, compare=False)

    @classmethod
    def parse(cls, allow: str, resolver: Resolver = resolve) -> AddressPolicy:
        """``allow``: host names, addresses and networks (CIDR), separated by commas."""
        hosts, networks = set(), []
        for item in (part.strip() for part in allow.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), resolver)

    async def address_for(self, url: httpx2.URL) -> str:
        """The address to connect to for ``url``; raises OutboundRefused."""
        if url.scheme not in ("http", "https"):
            raise OutboundRefused(f"only http and https URLs can be fetched, not {url.scheme!r}")
        host = url.host.lower().rstrip(".")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise OutboundRefused(f"{host} cannot be resolved: {exc.strerror or exc}") from exc
        if not addresses:
            raise OutboundRefused(f"{host} resolves to no address")
        for address in addresses:  # all of them: a name with one bad address is refused
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if is_internal(ip) and not self._allows(host, ip):
                raise OutboundRefused(
                    f"{host} resolves to {ip}, an internal address: fetching it is not "
                    "allowed (an operator may allow it with BOBBIN_URL_FETCH_ALLOW)"
                )
        return addresses[0]

    def _allows(self, host: str, ip: IPAddress) -> bool:
        return host in self.hosts or any(ip in network for network in self.networks)


@contextlib.asynccontextmanager
async def guarded_get(
    policy: AddressPolicy, url: httpx2.URL, *, timeout_s: float
) -> AsyncIterator[httpx2.Response]:
    """GET ``url`` on addresses ``policy`` allows, redirects included, as a streamed
    response; raises OutboundRefused or ``httpx2.HTTPError``."""
    async with httpx2.AsyncClient(
        timeout=timeout_s, trust_env=False, follow_redirects=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = await _send_pinned(client, policy, url)
            location = response.headers.get("location")
            if response.is_redirect and location:
                await response.aclose()
                url = url.join(location)
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise OutboundRefused(f"more than {MAX_REDIRECTS} redirects")


async def _send_pinned(
    client: httpx2.AsyncClient, policy: AddressPolicy, url: httpx2.URL
) -> httpx2.Response:
    address = await policy.address_for(url)
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request = client.build_request(
        "GET", url.copy_with(host=address), headers=headers, extensions=extensions
    )
    return await client.send(request, stream=True)
