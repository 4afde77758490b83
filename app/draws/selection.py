"""The selection algorithm: deterministic, from the seed and the canonical entry list alone.

Printed in docs/draws.md so anyone can re-implement it; change nothing here without a new
``ALGORITHM`` name, since every stored record names the version that drew it.
"""

from __future__ import annotations

import hashlib
import hmac

ALGORITHM = "hmac-sha256-rejection/1"
_SPAN = 2**64


def pick(seed: str, count: int, how_many: int) -> list[int]:
    """Positions (0-based, in the canonical list of ``count`` entries) of ``how_many`` entries
    drawn without replacement; fewer when the list is shorter.

    Each draw takes the next HMAC-SHA256(key=seed, message=counter as 8 bytes big-endian), reads
    its first 8 bytes as an unsigned number, and throws it away when it falls in the incomplete
    last block of 2**64 (so ``x % remaining`` has no modulo bias); the entry at that index of the
    remaining entries, still in canonical order, is removed from them and drawn.
    """
    key = seed.encode("utf-8")
    remaining = list(range(count))
    drawn: list[int] = []
    counter = 0
    while remaining and len(drawn) < how_many:
        size = len(remaining)
        limit = _SPAN - _SPAN % size
        while True:
            digest = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
            x = int.from_bytes(digest[:8], "big")
            if x < limit:
                break
        drawn.append(remaining.pop(x % size))
    return drawn
