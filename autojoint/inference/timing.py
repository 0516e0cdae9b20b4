"""Wall-clock seconds per prediction stage, and the log lines that report them
(``autojoint_predict -v``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch

# The stages of one case, in the order the log lines list them.
STAGES = ("read", "preprocess", "network", "evidence", "resample", "write")


class StageTimer:
    """Wall-clock seconds per named stage (CUDA work is synchronised before reading)."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.device = device

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def timing_line(case_id: str, seconds: Mapping[str, float]) -> str:
    """``CASE: read 0.10 s, ...; total 1.23 s`` over the stages timed."""
    parts = [f"{s} {seconds[s]:.2f} s" for s in STAGES if s in seconds]
    return f"{case_id}: " + ", ".join(parts) + f"; total {sum(seconds.values()):.2f} s"


def mean_timing_line(timings: Mapping[str, Mapping[str, float]]) -> str:
    """The per-stage mean over cases (a stage a case skipped counts as 0 s)."""
    means = {s: float(np.mean([t.get(s, 0.0) for t in timings.values()])) for s in STAGES}
    return timing_line("all", means).split(": ", 1)[1]
