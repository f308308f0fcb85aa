"""Throughput of a call, measured the same way by every benchmark."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

SECONDS = 3.0


def throughput(call: Callable[[], int], seconds: float = SECONDS) -> float:
    """Units a second of `call` (it returns the units it did), called over and over."""
    return concurrent_throughput([call], seconds)


def concurrent_throughput(calls: Sequence[Callable[[], int]], seconds: float = SECONDS) -> float:
    """Units a second of `calls` together, each called over and over by a thread of its
    own that never waits for the others (a closed loop per client, as a load generator
    keeps requests in flight)."""
    for call in calls:
        call()  # warm-up
    done = [0] * len(calls)
    t0 = time.perf_counter()
    deadline = t0 + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < deadline:
            done[i] += calls[i]()

    if len(calls) == 1:
        loop(0)
    else:
        threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(done) / (time.perf_counter() - t0)
