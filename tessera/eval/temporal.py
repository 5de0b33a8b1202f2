"""Frame-to-frame change against the truth's: `flicker` and `smoothness`.

VBench (Huang et al. 2023) measures temporal flickering as the mean absolute difference of consecutive
frames and motion smoothness as the error of a frame interpolator; here the interpolator is linear
(the mean of the two neighbours), and each figure is compared with the same figure on the truth render
of the prompt, so too little change (a frozen video) and too much (noise, jumps) both score low.
"""

from __future__ import annotations

import numpy as np

from tessera.eval.score import Score, closeness


def _float(video: np.ndarray) -> np.ndarray:
    x = np.asarray(video)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected a uint8 video (T, H, W, 3), got {x.dtype} {x.shape}")
    return x.astype(np.float32) / 255.0


def change(video: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames (pixels in [0, 1])."""
    x = _float(video)
    return float(np.abs(np.diff(x, axis=0)).mean()) if len(x) > 1 else 0.0


def interpolation_error(video: np.ndarray) -> float:
    """Mean absolute error of predicting frame t as the mean of frames t - 1 and t + 1."""
    x = _float(video)
    return float(np.abs(x[1:-1] - 0.5 * (x[:-2] + x[2:])).mean()) if len(x) > 2 else 0.0


def flicker(video: np.ndarray, truth_video: np.ndarray) -> Score:
    """Closeness of the consecutive-frame change to the truth's (1 = same amount of change)."""
    got, want = change(video), change(truth_video)
    return Score(closeness(got, want, 2e-3), {"change": got, "truth_change": want})


def smoothness(video: np.ndarray, truth_video: np.ndarray) -> Score:
    """Closeness of the linear-interpolation error to the truth's (1 = as smooth as the truth)."""
    got, want = interpolation_error(video), interpolation_error(truth_video)
    return Score(closeness(got, want, 2e-3), {"interp_error": got, "truth_interp_error": want})
