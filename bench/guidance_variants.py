"""`tessera eval` under a guidance rule that the pipeline does not offer: the rule is patched into
`tessera.pipeline` for this one run, and every other argument goes to `tessera eval` as given.

    python bench/guidance_variants.py VARIANT -- tessera-eval-arguments...

VARIANT:
- `cfg`: the pipeline's own classifier-free guidance (a control: the same figures as plain `tessera eval`);
- `apgW[-eE]`: projected guidance (Sadat et al. 2024, "APG") at scale W: the guidance direction
  v_c - v_u loses its part along the caption branch's clean estimate x0_c = x - t v_c (per latent frame)
  but for a share E of it (default 0), so `apgW-e1` is plain guidance at W;
- `rescaleW-pP`: guidance at W, its result's spread per latent frame rescaled toward the caption
  branch's by a share P (Lin et al. 2024);
- `shiftK`: plain guidance, the sampling schedule's shift multiplied by K (more steps at high noise).
"""

from __future__ import annotations

import sys

import torch

import tessera.pipeline as pipeline
from tessera import cli

FRAME_DIMS = (1, 3, 4)  # (B, C, T_z, H, W): channels and space, one value per latent frame


def _branches(fn, x, t):
    return fn(torch.cat([x, x]), torch.cat([t, t])).chunk(2)


def projected(scale: float, parallel: float):
    def make(fn, guidance, interval):
        def model_fn(x, t):
            v_c, v_u = _branches(fn, x, t)
            x0_c = x - t[:, None, :, None, None] * v_c
            d = v_c - v_u
            along = (d * x0_c).sum(FRAME_DIMS, keepdim=True) / (x0_c * x0_c).sum(
                FRAME_DIMS, keepdim=True
            ).clamp_min(1e-8)
            d_par = along * x0_c
            return v_c + (scale - 1) * (d - d_par + parallel * d_par)

        return model_fn

    return make


def rescaled(scale: float, share: float):
    def make(fn, guidance, interval):
        def model_fn(x, t):
            v_c, v_u = _branches(fn, x, t)
            v = v_u + scale * (v_c - v_u)
            ratio = v_c.std(FRAME_DIMS, keepdim=True) / v.std(FRAME_DIMS, keepdim=True).clamp_min(1e-8)
            return share * ratio * v + (1 - share) * v

        return model_fn

    return make


def patch(variant: str) -> None:
    """Put VARIANT's rule into the pipeline; a clear error for an unknown one."""
    try:
        if variant.startswith("apg"):
            w, _, e = variant[3:].partition("-e")
            pipeline.guided = projected(float(w), float(e or 0))
        elif variant.startswith("rescale"):
            w, _, p = variant[7:].partition("-p")
            pipeline.guided = rescaled(float(w), float(p))
        elif variant.startswith("shift"):
            k, token_shift = float(variant[5:]), pipeline.token_shift
            pipeline.token_shift = lambda n: k * token_shift(n)
        elif variant != "cfg":
            raise ValueError
    except ValueError:
        raise SystemExit(
            f"unknown variant '{variant}': use cfg, apgW[-eE], rescaleW-pP or shiftK (see --help)"
        ) from None


if __name__ == "__main__":
    if len(sys.argv) < 3 or "--" not in sys.argv or sys.argv[1] in ("-h", "--help"):
        raise SystemExit(__doc__)
    patch(sys.argv[1])
    sys.argv = ["tessera", *sys.argv[sys.argv.index("--") + 1 :]]
    cli.main()
