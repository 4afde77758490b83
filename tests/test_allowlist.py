"""Client address behind proxies, and the allowlist."""

from __future__ import annotations

import ipaddress

from app.ingest.allowlist import Allowlist, client_address, is_allowed

MOBITEX = (ipaddress.ip_network("213.5.10.19/32"), ipaddress.ip_network("213.5.10.22/32"))
PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def test_peer_is_the_client_without_trusted_proxies() -> None:
    assert client_address("213.5.10.19", "1.1.1.1", ()) == "213.5.10.19"
    assert client_address("1.1.1.1", "213.5.10.19", ()) == "1.1.1.1"


def test_rightmost_untrusted_hop_is_the_client_behind_proxies() -> None:
    assert client_address("10.0.0.1", "213.5.10.19", PROXIES) == "213.5.10.19"
    assert client_address("10.0.0.1", "6.6.6.6, 213.5.10.19, 10.0.0.7", PROXIES) == "213.5.10.19"
    # A client that writes the Mobitex address itself is still the right-most untrusted hop.
    assert client_address("10.0.0.1", "213.5.10.19, 6.6.6.6", PROXIES) == "6.6.6.6"


def test_garbled_forwarded_for_from_a_proxy_is_refused() -> None:
    assert client_address("10.0.0.1", "not-an-ip", PROXIES) is None
    assert not is_allowed(None, MOBITEX)


def test_ipv4_mapped_ipv6_peer_and_ports_are_understood() -> None:
    assert client_address("::ffff:213.5.10.22", None, ()) == "213.5.10.22"
    assert client_address("10.0.0.1", "213.5.10.22:51234", PROXIES) == "213.5.10.22"
    assert client_address("10.0.0.1", "[2001:db8::1]:443", PROXIES) == "2001:db8::1"


def test_allowlist_accepts_only_listed_addresses_and_ranges() -> None:
    assert is_allowed("213.5.10.19", MOBITEX)
    assert is_allowed("213.5.10.22", MOBITEX)
    assert not is_allowed("213.5.10.20", MOBITEX)
    assert is_allowed("10.1.2.3", PROXIES)
    assert not is_allowed("2001:db8::1", MOBITEX)


def test_allowlist_judges_behind_proxies_and_remembers_within_its_bound() -> None:
    door = Allowlist(MOBITEX, PROXIES)
    for _ in range(2):  # the second round answers from memory, and must say the same
        assert door.judge("213.5.10.19", None) == ("213.5.10.19", True)
        assert door.judge("10.0.0.1", "213.5.10.22") == ("213.5.10.22", True)
        assert door.judge("10.0.0.1", "213.5.10.22, 6.6.6.6") == ("6.6.6.6", False)
        assert door.judge("6.6.6.6", "213.5.10.19") == ("6.6.6.6", False)
        assert door.judge("10.0.0.1", "not-an-ip") == (None, False)
        assert door.judge(None, None) == (None, False)
    for n in range(Allowlist.MEMORY * 2):  # forged headers by the thousand: the memory stays bounded
        assert door.judge("6.6.6.6", f"10.0.{n // 256 % 256}.{n % 256}") == ("6.6.6.6", False)
    assert len(door._judged) <= Allowlist.MEMORY
    assert door.judge("213.5.10.22", "1.1.1.1") == ("213.5.10.22", True)
