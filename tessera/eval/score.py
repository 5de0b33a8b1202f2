"""The value every metric returns, and the two ways figures are turned into scores in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Score:
    """A metric's value in [0, 1] (higher is better; None where the clip does not exercise it) plus
    per-item details for the report."""

    value: float | None
    details: dict = field(default_factory=dict)


def closeness(figure: float, truth: float, eps: float) -> float:
    """How close a figure is to the truth's, in [0, 1]: min / max of the two (each plus `eps`), so both
    too much and too little are penalised (a frozen video and a flickering one both score low)."""
    a, b = abs(figure) + eps, abs(truth) + eps
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0
    return min(a, b) / max(a, b)


def at_most(figure: float, truth: float, eps: float) -> float:
    """For error figures (residuals): 1 while the figure is no worse than the truth's, then
    (truth + eps) / (figure + eps)."""
    if not math.isfinite(figure):
        return 0.0
    return min(1.0, (abs(truth) + eps) / (abs(figure) + eps))


def mean(values: list[float | None]) -> float | None:
    """Mean of the values that are not None (None if there are none)."""
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
