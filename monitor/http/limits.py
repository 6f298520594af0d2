"""Caps on open streams, in all and per client address."""

from __future__ import annotations

from collections import Counter


class StreamLimiter:
    """Counts open streams; `acquire` refuses beyond the caps, `release` gives a slot back."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self._per_address: Counter[str] = Counter()

    def acquire(self, address: str) -> str | None:
        """Take a slot for `address`; None if granted, else why not (for the 503 body)."""
        if self.total >= self.max_total:
            return f"too many open streams ({self.max_total}); try again later"
        if self._per_address[address] >= self.max_per_address:
            return f"too many open streams from your address ({self.max_per_address})"
        self.total += 1
        self._per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """Give back a slot taken by `acquire`."""
        self.total -= 1
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def open_from(self, address: str) -> int:
        """Streams open from `address` now."""
        return self._per_address.get(address, 0)
