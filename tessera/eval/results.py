"""What a benchmark run produces and every part of the benchmark shares: the clip metrics' names, the
error type, and results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tessera.errors import RequestError
from tessera.files import atomic_write_text

EvalError = RequestError  # the benchmark's refusals: a request (docs/design.md, "Checks and errors")

CLIP_METRICS = (
    "text_alignment",
    "objects_right",
    "objects_exact",
    "object_permanence",
    "consistency_3d",
    "physics",
    "flicker",
    "smoothness",
)


def plain(x):
    """JSON-ready copy (numpy scalars to floats, inf/nan to None)."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def save_results(results: dict, out: Path) -> Path:
    """Write results.json."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    atomic_write_text(path, json.dumps(plain(results), indent=1) + "\n")
    return path
