"""The defaults of generation, in one place: the command line, the pipeline and the web page read them here,
so what `tessera generate` does with no flags is what the page does with its fields untouched."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Defaults:
    """What a request leaves out. `frames` is the trained clip length; `long_frames` the length of `long`."""

    steps: int = 25
    guidance: float = 5.0
    seed: int = 0
    sampler: str = "euler"
    guidance_interval: tuple[float, float] | None = None  # guidance at every step
    frames: int = 33
    width: int = 128
    height: int = 128
    fps: float = 16.0
    strength: float = 0.6  # `edit`: 0 keeps the source, 1 ignores it
    long_frames: int = 65
    window: int = 33  # `long`: frames per sampled window

    @property
    def size(self) -> str:
        """WIDTHxHEIGHT, as `--size` takes it."""
        return f"{self.width}x{self.height}"


DEFAULTS = Defaults()


def parse_interval(text: str | None) -> tuple[float, float] | None:
    """Parse 'LO,HI' into (lo, hi); None stays None (guidance at every step)."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--guidance-interval must look like LO,HI, e.g. 0.2,0.8; got '{text}'") from None
    return lo, hi
