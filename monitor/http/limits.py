"""Caps on open streams, in all and per client address."""

from __future__ import annotations

from collections import Counter

from monitor.config import is_loopback


class StreamLimiter:
    """Counts open streams; `acquire` refuses beyond the caps, `release` gives a slot back.
    Loopback addresses count against the total only."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self._per_address: Counter[str] = Counter()

    def acquire(self, address: str) -> str | None:
        """Take a slot for `address`; None if granted, else why not (for the 503 body)."""
        if self.total >= self.max_total:
            return f"too many open streams ({self.max_total}); try again later"
        # Loopback is this machine: its users, or a reverse proxy in front of all of them.
        is_counted = not is_loopback(address)
        if is_counted and self._per_address[address] >= self.max_per_address:
            return f"too many open streams from your address ({self.max_per_address})"
        self.total += 1
        if is_counted:
            self._per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        """Give back a slot taken by `acquire`."""
        self.total -= 1
        if address in self._per_address:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
