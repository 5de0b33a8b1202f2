"""The defaults of generation, in one place: the command line, the pipeline and the web page read them here,
so what `tessera generate` does with no flags is what the page does with its fields untouched.

The sampling options (`SAMPLING`) also carry their command-line help: every command that samples takes
them as flags built from these fields (`tessera.cli`), so a name, a default or a help line is written
once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def parse_interval(text: str | None) -> tuple[float, float] | None:
    """Parse 'LO,HI' into (lo, hi); None stays None (guidance at every step)."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--guidance-interval must look like LO,HI, e.g. 0.2,0.8; got '{text}'") from None
    return lo, hi


def _option(default: Any, help: str, flag_type: type | Any = None, parse: Any = None) -> Any:
    """A sampling option: its default, its help line, the type its flag takes (the default's own unless
    given) and how the flag's text becomes the value (`parse`; None: as typed)."""
    kind = type(default) if flag_type is None else flag_type
    return field(default=default, metadata={"help": help, "type": kind, "parse": parse})


@dataclass(frozen=True)
class Defaults:
    """What a request leaves out. `frames` is the trained clip length; `long_frames` the length of `long`."""

    steps: int = _option(25, "Sampler steps.")
    guidance: float = _option(5.0, "Classifier-free guidance scale (1 = off).")
    seed: int = _option(0, "Random seed; the same seed gives the same output.")
    sampler: str = _option("euler", "euler or heun (Heun: two DiT calls a step).")
    guidance_interval: tuple[float, float] | None = _option(
        None, "LO,HI: guide only at times t in [LO, HI] (1 = noise; default: always).", str | None,
        parse_interval,
    )  # fmt: skip
    negative_prompt: str = _option("", "What guidance steers away from (the unconditional branch's caption).")
    shift: float | None = _option(
        None, "Flow shift of the time grid (default: the model's own; Wan: 3 at 480p, 5 at 720p).",
        float | None,
    )  # fmt: skip
    ar_step: int = _option(
        0, "Diffusion forcing (SkyReels-V2 DF models): each block of latent frames starts this many steps "
        "after the block before it, so later frames stay noisier (0: all frames on one schedule).",
    )  # fmt: skip
    causal_block: int | None = _option(
        None, "Latent frames per block of --ar-step, attending only to their own and earlier blocks "
        "(default: the model's own; DF models only).", int | None,
    )  # fmt: skip
    condition_noise: float = _option(
        0.0, "Diffusion forcing (SkyReels-V2 DF models): the given frames are shown to the DiT re-noised "
        "to this time, with fresh noise at every step (SkyReels' addnoise_condition / 1000; 0.02 "
        "smooths extended and long videos; 0: clean).",
    )  # fmt: skip
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
# The options of the sampler call that every capability passes through (`tessera.sampling.Sampling`).
SAMPLING = tuple(f for f in fields(Defaults) if "help" in f.metadata)
