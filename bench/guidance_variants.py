"""`tessera eval` under projected guidance (APG, Sadat et al. 2024), which the pipeline does not offer:
the rule is passed to the evaluation as its guidance rule (`tessera.flow.samplers.GuidanceRule`), and
every other argument, `--guidance` (the scale) included, goes to `tessera eval` as given, so its
results.json records the scale and the rule used.

    python bench/guidance_variants.py apg[-eE] -- eval MODEL --guidance 7.5 ...

The guidance direction v_c - v_u loses its part along the caption branch's clean estimate
x0_c = x - t v_c (per latent frame) but for a share E of it (default 0); `apg-e1` is plain guidance,
a control that reproduces `tessera eval`'s figures. A guidance interval applies as it does to plain
guidance (`samplers.guided`).
"""

from __future__ import annotations

import sys

import typer

from tessera import cli
from tessera.eval.suite import eval_command
from tessera.flow.samplers import GuidanceRule

FRAME_DIMS = (1, 3, 4)  # (B, C, T_z, H, W): channels and space, one value per latent frame


def projected(parallel: float) -> GuidanceRule:
    """The guidance rule that keeps a share `parallel` of guidance along x0_c."""

    def rule(v_c, v_u, x, t, guidance: float):
        x0_c = x - t[:, None, :, None, None] * v_c
        d = v_c - v_u
        norm = (x0_c * x0_c).sum(FRAME_DIMS, keepdim=True).clamp_min(1e-8)
        along = (d * x0_c).sum(FRAME_DIMS, keepdim=True) / norm
        d_par = along * x0_c
        return v_c + (guidance - 1) * (d - d_par + parallel * d_par)

    rule.__name__ = f"apg-e{parallel:g}"
    return rule


def main(argv: list[str]) -> None:
    """Parse `eval ...` as `tessera eval` does and run it under the rule named by argv[1]."""
    if len(argv) < 3 or "--" not in argv or not argv[1].startswith("apg"):
        raise SystemExit(__doc__)
    try:
        share = float(argv[1][3:].removeprefix("-e") or 0)
    except ValueError:
        raise SystemExit(f"variant must be apg or apg-eE (E a number); got '{argv[1]}'") from None
    args = argv[argv.index("--") + 1 :]
    if args[:1] != ["eval"]:
        raise SystemExit("bench/guidance_variants.py runs `tessera eval`: give `-- eval MODEL ...`")
    command = typer.main.get_command(cli.app).commands["eval"]
    try:
        flags = cli.eval_.options(command.make_context("eval", args[1:]).params)
        eval_command(**cli.eval_arguments(**flags), guidance_rule=projected(share))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {flags['out']}")


if __name__ == "__main__":
    main(sys.argv)
