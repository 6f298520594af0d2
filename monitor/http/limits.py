"""Caps on open things (streams, connections), in all and per client address."""

from __future__ import annotations

from collections import Counter

from monitor.config import is_loopback

# How long a client refused by a cap should wait before trying again.
BUSY_RETRY_S = 5


class Caps:
    """Counts open `what`s; `acquire` refuses beyond the caps, `release` gives a place back.
    Loopback addresses count against the total only: loopback is this machine's users, or a
    reverse proxy in front of all of them."""

    def __init__(self, what: str, max_total: int, max_per_address: int) -> None:
        self.what = what
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.refused = 0
        self._per_address: Counter[str] = Counter()

    def acquire(self, address: str) -> str | None:
        """Take a place for `address`; None if granted, else why not (for the 503 body)."""
        is_counted = not is_loopback(address)
        if self.total >= self.max_total:
            why = f"too many open {self.what} ({self.max_total}); try again later"
        elif is_counted and self._per_address[address] >= self.max_per_address:
            why = f"too many open {self.what} from your address ({self.max_per_address})"
        else:
            self.total += 1
            if is_counted:
                self._per_address[address] += 1
            return None
        self.refused += 1
        return why

    def release(self, address: str) -> None:
        """Give back a place taken by `acquire`."""
        self.total -= 1
        if address in self._per_address:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
