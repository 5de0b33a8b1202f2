"""`tessera eval` under projected guidance (APG, Sadat et al. 2024), which the pipeline does not offer:
the rule replaces `tessera.sampling.guided` for this one run, and every other argument, `--guidance`
(the scale) included, goes to `tessera eval` as given, so its results.json records the scale used.

    python bench/guidance_variants.py apg[-eE] -- eval MODEL --guidance 7.5 ...

The guidance direction v_c - v_u loses its part along the caption branch's clean estimate
x0_c = x - t v_c (per latent frame) but for a share E of it (default 0); `apg-e1` is plain guidance,
a control that reproduces `tessera eval`'s figures exactly.
"""

from __future__ import annotations

import sys

import torch

import tessera.sampling as sampling
from tessera import cli

FRAME_DIMS = (1, 3, 4)  # (B, C, T_z, H, W): channels and space, one value per latent frame


def projected(parallel: float):
    """A drop-in for `samplers.guided` that keeps a share `parallel` of guidance along x0_c."""

    def guided(fn, guidance: float, interval):
        if interval is not None:
            raise SystemExit("bench/guidance_variants.py: --guidance-interval is not supported with apg")

        def model_fn(x, t):
            v_c, v_u = fn(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
            x0_c = x - t[:, None, :, None, None] * v_c
            d = v_c - v_u
            along = (d * x0_c).sum(FRAME_DIMS, keepdim=True) / (x0_c * x0_c).sum(
                FRAME_DIMS, keepdim=True
            ).clamp_min(1e-8)
            d_par = along * x0_c
            return v_c + (guidance - 1) * (d - d_par + parallel * d_par)

        return model_fn

    return guided


if __name__ == "__main__":
    if len(sys.argv) < 3 or "--" not in sys.argv or not sys.argv[1].startswith("apg"):
        raise SystemExit(__doc__)
    try:
        share = float(sys.argv[1][3:].removeprefix("-e") or 0)
    except ValueError:
        raise SystemExit(f"variant must be apg or apg-eE (E a number); got '{sys.argv[1]}'") from None
    sampling.guided = projected(share)
    sys.argv = ["tessera", *sys.argv[sys.argv.index("--") + 1 :]]
    cli.main()
