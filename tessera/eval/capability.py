"""Scores for the conditioned capabilities (image-to-video, extend, connect, loop, edit).

Each takes uint8 videos (T, H, W, 3) and what was given, and returns a float; none needs a parser.
"""

from __future__ import annotations

import numpy as np

from tessera.eval.recon import psnr
from tessera.eval.temporal import change


def i2v_psnr(video: np.ndarray, image: np.ndarray) -> float:
    """PSNR (dB) of the first frame against the given image (H, W, 3)."""
    return psnr(video[0], image)


def extend_seam(video: np.ndarray, join: int, truth_change: float | None = None) -> float:
    """Change across the join (frame join - 1 -> join) over the typical frame change: the truth's mean
    consecutive change if given, else the video's own median away from the join. About 1 is seamless;
    much larger is a visible cut."""
    x = np.asarray(video).astype(np.float32) / 255
    if not 1 <= join < len(x):
        raise ValueError(f"join must be in 1..{len(x) - 1}, got {join}")
    steps = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # (T - 1,)
    typical = truth_change if truth_change is not None else float(np.median(np.delete(steps, join - 1)))
    return float(steps[join - 1] / max(typical, 1e-4))


def connect_psnr(video: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Mean PSNR of the video's first len(start) frames against `start` and last len(end) against `end`."""
    return 0.5 * (psnr(video[: len(start)], start) + psnr(video[len(video) - len(end) :], end))


def loop_closure(video: np.ndarray) -> float:
    """Change from the last frame back to the first over the video's median consecutive change
    (about 1 for a seamless loop; a jump scores high)."""
    x = np.asarray(video).astype(np.float32) / 255
    typical = float(np.median(np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))))
    return float(np.abs(x[-1] - x[0]).mean() / max(typical, 1e-4))


def edit_monotonic(source: np.ndarray, edits: list[tuple[float, np.ndarray]]) -> float:
    """Fraction of strength pairs (s_i < s_j) whose edits are at least as far from the source (mean
    absolute pixel difference) for the larger strength: 1 = distance grows with strength (Kendall-style)."""
    d = sorted((s, float(np.abs(v.astype(np.float32) - source.astype(np.float32)).mean())) for s, v in edits)
    pairs = [(a, b) for i, a in enumerate(d) for b in d[i + 1 :] if b[0] > a[0]]
    return float(np.mean([b[1] >= a[1] for a, b in pairs])) if pairs else 1.0


__all__ = ["change", "connect_psnr", "edit_monotonic", "extend_seam", "i2v_psnr", "loop_closure"]
