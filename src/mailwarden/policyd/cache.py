"""A small TTL + size-bounded cache for policy lookups.

Who calls it: ``policyd.checks.CachedFacts``, from the event loop (cache-only pass) and from
worker threads (store pass), hence the lock.

Entries live ``ttl`` seconds (``policy.cache_ttl``, default 5 s): short enough that
``mailwarden user add`` takes effect within seconds without any invalidation message,
long enough that a burst of RCPTs for one domain costs one query. At ``size`` entries
the least recently used one is dropped, so memory stays bounded whatever the traffic.
Store failures are never cached: the next request asks the database again, which is how
the daemon recovers by itself.

The clock is injected (``clock``) so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MISSING: Any = object()


class TTLCache:
    def __init__(self, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = max(1, size)
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The cached value, or ``MISSING`` when absent or expired."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return MISSING
            if item[0] <= self._clock():
                del self._data[key]
                return MISSING
            self._data.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._data[key] = (self._clock() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
