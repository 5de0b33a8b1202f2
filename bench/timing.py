"""Timing helpers shared by the benchmark scripts (run as `python bench/NAME.py`, which puts this folder
on the import path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | str, warmup: int = 2, iters: int = 5) -> float:
    """Median seconds of `fn()` over `iters` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device: torch.device | str) -> float:
    """Best measured matmul FLOP/s (bf16 on CUDA, fp32 on the CPU) over a few square sizes: the
    denominator of every MFU figure, measured in the same run rather than taken from a data sheet."""
    cuda = torch.device(device).type == "cuda"
    sizes, dtype = ((4096, 8192, 16384), torch.bfloat16) if cuda else ((256, 512, 1024), torch.float32)
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = max(best, 2 * n**3 / timed(lambda a=a, b=b: a @ b, device, warmup=3, iters=10))
        del a, b
    return best
