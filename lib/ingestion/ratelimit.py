"""The call-rate cap: evenly spaced call slots, shared by the sync (threads) and async (event loop) clients.

Why a pacer and not a token bucket with a burst (aiolimiter, for instance): Polygon counts calls per
minute, and a bucket that starts full lets `max_rate` calls through at once and `max_rate` more over the
next minute, up to twice the cap in the first minute. Slots spaced `60 / per_minute` apart never exceed the
cap in any window, and reserving a slot is one subtraction, so the hot path stays cheap.

Across Spark partitions there is no shared memory, so the budget is split: each of the k partitions paces at
`per_partition_rate(cap, k)`, partition i starting i/cap minutes late so their slots interleave, and the
caller runs no more partitions than it has task slots (all at once, so the shares add up to the cap).
"""

from __future__ import annotations

import asyncio
import threading
import time


def per_partition_rate(per_minute: float, partitions: int) -> float:
    """A partition's share of the cap (0 stays 0: no limit)."""
    if not per_minute:
        return 0.0
    return per_minute / max(1, partitions)


class Pacer:
    """Spaces calls evenly so that at most `per_minute` start in any minute (0 means no limit).

    `reserve()` books the next free slot and returns how long to wait for it; `wait()` sleeps a thread,
    `wait_async()` sleeps a coroutine. Thread-safe; on one event loop no lock is needed but it is cheap.
    """

    def __init__(self, per_minute: float, start_in: float = 0.0):
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = time.monotonic() + start_in  # the first slot (staggers partitions sharing a cap)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        return start - now

    def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def wait_async(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
