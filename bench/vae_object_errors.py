"""Where a VAE loses the world's objects: the PSNR of its round trip on object pixels split by where they
are (an object's interior, its one-pixel silhouette, the ground just around it) and by each frame's place
in the 4-frame group that one latent frame encodes.

    python bench/vae_object_errors.py [MODEL_FOLDER] [--clips 12] [--shape 33x128x128]

Held-out world clips (the sample indices `tessera train eval-vae` uses), posterior-mean latents, pixels
compared on a [0, 1] scale as in `reconstruction_psnr`; each figure pools the squared errors of all its
pixels over all clips, then converts to dB. If the silhouette is far below the interior, the latent grid
is too coarse for the edges; if one place in the group is far below the others, time compression is.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from tessera.checkpoint import load_model
from tessera.data.source import WorldSource
from tessera.train.config import parse_shapes
from tessera.train.vae import STATS_OFFSET


def regions(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Object mask (T, H, W) bool -> interior (eroded by one pixel), silhouette (the pixels the erosion
    removed), and the ground within 3 pixels of an object."""
    m = mask.float()[:, None]
    interior = (-F.max_pool2d(-m, 3, 1, 1))[:, 0].bool()
    near = F.max_pool2d(m, 7, 1, 3)[:, 0].bool()
    return {"interior": interior, "silhouette": mask & ~interior, "ground near": near & ~mask}


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="tessera/assets/model", help="model folder")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--shape", default="33x128x128", help="FRAMESxHEIGHTxWIDTH of the world clips")
    args = ap.parse_args()
    vae = load_model(args.model).vae.float().eval()
    world = WorldSource(parse_shapes(args.shape), objects=True)
    sums: dict[str, list[float]] = {}

    def add(name: str, err: torch.Tensor, where: torch.Tensor) -> None:
        s = sums.setdefault(name, [0.0, 0])
        s[0] += err[where].sum().item()
        s[1] += int(where.sum())

    area = []
    for i in range(args.clips):
        sample = world.sample(STATS_OFFSET + i)
        mask = sample["objects"].bool()
        if not mask.any():
            continue
        x = sample["video"][None].float()
        recon = vae.decode(vae.encode(x)[0]).clamp(-1, 1)
        err = ((recon - x) / 2).square().mean(1)[0]  # (T, H, W)
        add("object pixels", err, mask)
        for name, where in regions(mask).items():
            add(name, err, where)
        for t in range(err.shape[0]):  # frame 0 is a latent frame alone; then groups of 4
            add("frame 0 (alone)" if t == 0 else f"place {(t - 1) % 4 + 1} of 4", err[t], mask[t])
        area.append(mask.float().mean().item())
    print(
        f"{args.model}: {len(area)} held-out world clips of {args.shape}; "
        f"objects cover {100 * sum(area) / len(area):.1f}% of pixels"
    )
    print("| pixels | PSNR (dB) | pixels counted |\n|---|---|---|")
    for name, (total, n) in sums.items():
        print(f"| {name} | {10 * math.log10(n / max(total, 1e-12)):.2f} | {n:,} |")


if __name__ == "__main__":
    main()
