"""What the default `tessera generate` costs for candidate model sizes, beside the shipped size, in one run.

    python bench/generate_cost.py                       # CPU: the shipped size and the second-generation ones
    python bench/generate_cost.py --presets s-deeper,g2-d512 --reps 1

For each preset a model of random weights (its VAE, text encoder and DiT; the shipped tokenizer) samples
the default request (`tessera.options` defaults: 33x128x128, 25 steps, guidance, seed 0) as
`tessera generate` does: the prompt encoded, `sample_latents`, then `decode`. Each part's time is the
median of `--reps` runs after one warm-up run; the last column is the whole request against the first
preset's (the shipped size), measured in the same run on the same threads. Prints one table with the
device, thread count, versions and date.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from tessera import sampling
from tessera.checkpoint import build_model
from tessera.config import get_preset
from tessera.models.text import Tokenizer
from tessera.options import DEFAULTS as D
from tessera.sampling import request_shape

PROMPT = "a small red cube slides to the left on a checker floor at noon"


def params(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="s-deeper,g2-z32,g2-z32-w48,g2-d512,g2-d768")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=D.steps)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows, base = [], None
    for name in args.presets.split(","):
        config = get_preset(name)
        model = build_model(config, Tokenizer.train([PROMPT], config.text.vocab_size), "cpu")
        model.eval()
        shape = request_shape(model, D.frames, D.height, D.width)
        times: dict[str, list[float]] = {"sample": [], "decode": []}
        for rep in range(args.reps + 1):
            t0 = time.perf_counter()
            z = sampling.sample_latents(model, PROMPT, shape, steps=args.steps)
            t1 = time.perf_counter()
            sampling.decode(model, z)
            t2 = time.perf_counter()
            if rep:  # the first run warms up
                times["sample"].append(t1 - t0)
                times["decode"].append(t2 - t1)
        s, d = (statistics.median(times[k]) for k in ("sample", "decode"))
        base = base or s + d
        rows.append(
            f"| {name} | {params(model.dit):.1f}M, dim {config.dit.dim}, depth {config.dit.depth} | "
            f"{params(model.vae):.1f}M, z {config.vae.z_channels}, width {config.vae.base_channels} | "
            f"{s:.1f} | {d:.2f} | {s + d:.1f} | {(s + d) / base:.2f}x |"
        )
        print(rows[-1], flush=True)
    device = platform.processor() or platform.machine()
    print(
        f"\n# default generate ({D.frames}x{D.height}x{D.width}, {args.steps} steps, guidance {D.guidance}) "
        f"by model size, random weights; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}\n"
        f"device: {device}, {torch.get_num_threads()} threads; torch {torch.__version__}; "
        f"python {platform.python_version()}\n"
    )
    print("| preset | DiT | VAE | sampling (s) | decoding (s) | whole (s) | vs the first |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
