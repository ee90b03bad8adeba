"""Resident memory and CPU time of the stack's processes, sampled from a background thread (psutil)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass
class Series:
    """Samples of one process."""

    pid: int
    rss: list[tuple[float, int]] = field(default_factory=list)  # (wall-clock time, bytes)
    cpu_start: float | None = None
    cpu_end: float | None = None

    def rss_mb_at_or_before(self, t: float) -> float | None:
        """The last RSS sample taken at or before ``t`` (MB)."""
        best = None
        for at, value in self.rss:
            if at <= t:
                best = value
        return round(best / MB, 1) if best is not None else None

    def max_rss_mb_between(self, start: float, end: float) -> float | None:
        values = [v for at, v in self.rss if start <= at <= end]
        return round(max(values) / MB, 1) if values else None

    def summary(self) -> dict[str, Any]:
        values = [v for _, v in self.rss]
        cpu = None
        if self.cpu_start is not None and self.cpu_end is not None:
            cpu = round(self.cpu_end - self.cpu_start, 2)
        return {
            "rss_start_mb": round(values[0] / MB, 1) if values else None,
            "rss_max_mb": round(max(values) / MB, 1) if values else None,
            "rss_end_mb": round(values[-1] / MB, 1) if values else None,
            "cpu_seconds": cpu,
        }


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


class Sampler:
    """Samples RSS of the named processes every ``interval`` seconds until stopped; CPU time at both ends."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.interval = interval
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.series = {name: Series(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self.started_at = 0.0
        self.elapsed = 0.0

    def add(self, name: str, pid: int) -> None:
        """Sample one more process from now on."""
        self.procs[name] = psutil.Process(pid)
        self.series[name] = Series(pid, cpu_start=_cpu(self.procs[name]))

    def __enter__(self) -> Sampler:
        self.started_at = time.monotonic()
        for name, proc in self.procs.items():
            self.series[name].cpu_start = _cpu(proc)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        self.elapsed = time.monotonic() - self.started_at
        for name, proc in self.procs.items():
            self.series[name].cpu_end = _cpu(proc)

    def _sample(self) -> None:
        now = time.time()
        for name, proc in list(self.procs.items()):
            try:
                self.series[name].rss.append((now, proc.memory_info().rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def summary(self) -> dict[str, Any]:
        """Per process: RSS at start, max and end (MB), CPU seconds used, and CPU share of the window."""
        out: dict[str, Any] = {}
        for name, series in self.series.items():
            item = series.summary()
            if item["cpu_seconds"] is not None and self.elapsed > 0:
                item["cpu_share_of_one_core"] = round(item["cpu_seconds"] / self.elapsed, 2)
            out[name] = item
        return out
