"""Where a reconcile pass spends its time: named stage durations for the log, the audit event and bench/.

The clock is injected, so code that reports timings stays testable without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._durations: dict[str, float] = {}
        self._lock = threading.Lock()  # stages of one pass may run in parallel threads

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage `name` (a stage entered twice adds up)."""
        start = self._clock()
        try:
            yield
        finally:
            self.add(name, self._clock() - start)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._durations[name] = self._durations.get(name, 0.0) + seconds

    @property
    def durations(self) -> dict[str, float]:
        """Stage -> seconds (rounded to the millisecond), in the order the stages first ran. Stages that
        ran side by side overlap: their sum can exceed the pass's duration."""
        with self._lock:
            return {k: round(v, 3) for k, v in self._durations.items()}
