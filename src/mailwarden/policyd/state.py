"""Per-transaction state, keyed by Postfix's ``instance`` (REFERENCE §1.5).

Who calls it: ``policyd.checks``. Postfix sends every request of one mail transaction
with the same ``instance`` over the same connection, and a new ``instance`` on that
connection means the previous transaction ended; Exim's ACLs send an id they make up
(``$acl_m_pol_id``), each over a fresh readsocket connection. So the table is shared by
all connections, dropped per instance when its connection moves on, and bounded (LRU,
``max_entries``) plus aged out (``max_age``) for transactions that just vanish.

What it holds: the recipients we let through at RCPT (the recipient count for the limit,
their domains for the size check at END-OF-MESSAGE), and whether every one of them was on an
allow list (passed on as a header at DATA).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Transaction:
    instance: str
    created: float
    recipients: list[str] = field(default_factory=list)
    allowed: list[bool] = field(default_factory=list)

    @property
    def all_allowed(self) -> bool:
        return bool(self.allowed) and all(self.allowed)

    def accept(self, recipient: str, allowed: bool) -> None:
        self.recipients.append(recipient)
        self.allowed.append(allowed)


class Transactions:
    def __init__(
        self,
        max_entries: int = 20000,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data: OrderedDict[str, Transaction] = OrderedDict()
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, instance: str) -> Transaction:
        """The transaction ``instance`` (created on first use); a throw-away one if empty."""
        now = self._clock()
        if not instance:
            return Transaction("", now)
        with self._lock:
            tx = self._data.get(instance)
            if tx is None or now - tx.created > self._max_age:
                tx = Transaction(instance, now)
                self._data[instance] = tx
            self._data.move_to_end(instance)
            while len(self._data) > self._max_entries:
                self._data.popitem(last=False)
            return tx

    def peek(self, instance: str) -> Transaction:
        """The transaction if it exists, else an empty throw-away one (nothing stored)."""
        with self._lock:
            tx = self._data.get(instance) if instance else None
        return tx if tx is not None else Transaction(instance, self._clock())

    def drop(self, instance: str) -> None:
        with self._lock:
            self._data.pop(instance, None)

    def __len__(self) -> int:
        return len(self._data)
