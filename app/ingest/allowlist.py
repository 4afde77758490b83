"""Who is asking: the client address behind trusted proxies, checked against the allowlist."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from app.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> IPAddress | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:5123"
        value = value.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _within(addr: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def client_address(peer: str | None, forwarded_for: str | None, proxies: tuple[IPNetwork, ...]) -> str | None:
    """The address the request really came from.

    X-Forwarded-For is believed only when the TCP peer is a trusted proxy, and then only up to
    the first hop (from the right) that is not itself a trusted proxy: everything left of that
    was written by the client and can be forged.
    """
    peer_addr = _parse(peer) if peer else None
    if peer_addr is None:
        return None
    if not forwarded_for or not _within(peer_addr, proxies):
        return str(peer_addr)
    hops = [h for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:
            return None  # a garbled hop written by someone we trust to be correct: refuse
        if not _within(addr, proxies):
            return str(addr)
    first = _parse(hops[0]) if hops else None
    return str(first) if first else str(peer_addr)


def is_allowed(address: str | None, allowed: tuple[IPNetwork, ...]) -> bool:
    if address is None:
        return False
    addr = _parse(address)
    return addr is not None and _within(addr, allowed)


class Allowlist:
    """The webhook's door: who a request comes from, and whether that address may post MO messages.

    Mobitex posts from a handful of addresses, so the same (peer, X-Forwarded-For) pair comes back
    request after request: each pair is judged once and remembered. The memory is bounded, since a
    client may write anything into X-Forwarded-For; when full it starts again from empty.
    """

    MEMORY = 4096

    def __init__(self, allowed: tuple[IPNetwork, ...], proxies: tuple[IPNetwork, ...]) -> None:
        self._allowed, self._proxies = allowed, proxies
        self._judged: dict[tuple[str | None, str | None], tuple[str | None, bool]] = {}

    def judge(self, peer: str | None, forwarded_for: str | None) -> tuple[str | None, bool]:
        """The client address (None if unreadable) and whether it is allowed."""
        key = (peer, forwarded_for)
        verdict = self._judged.get(key)
        if verdict is None:
            client = client_address(peer, forwarded_for, self._proxies)
            verdict = (client, is_allowed(client, self._allowed))
            if len(self._judged) >= self.MEMORY:
                self._judged.clear()
            self._judged[key] = verdict
        return verdict
