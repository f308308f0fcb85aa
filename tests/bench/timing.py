"""Throughput of a call, measured the same way by every benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable

SECONDS = 3.0


def throughput(call: Callable[[], int], seconds: float = SECONDS) -> float:
    call()  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += call()
    return done / (time.perf_counter() - t0)
