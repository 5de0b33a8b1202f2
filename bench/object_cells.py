"""How much of the DiT's loss the world's objects carry under `object_weight`: the fraction of latent
cells an object touches (`tessera.train.dit.object_cells`, the cells the weight applies to) over world
clips, and the share of each frame's loss weight that those cells get at each weight W.

    python bench/object_cells.py [--shape 17x128x128] [--clips 16] [--weights 0,3,5,10,20]
"""

from __future__ import annotations

import argparse

import torch

from tessera.data.source import WorldSource
from tessera.train.config import parse_shapes
from tessera.train.kept import object_cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="17x128x128", help="FRAMESxHEIGHTxWIDTH of the world clips")
    ap.add_argument("--clips", type=int, default=16, help="train-split world clips, from seed 0")
    ap.add_argument("--weights", default="0,3,5,10,20", help="object_weight values to show")
    args = ap.parse_args()
    world = WorldSource(parse_shapes(args.shape), objects=True)
    cells = torch.stack([object_cells(s["objects"]) for s in world.samples(list(range(args.clips)))])
    per_frame = cells.mean(dim=(2, 3))  # (clips, T_z): the fraction of each latent frame's cells
    print(f"{args.clips} world clips of {args.shape}: object cells {per_frame.mean():.1%} of all cells")
    print("| object_weight | objects' share of a frame's loss weight |\n|---|---|")
    for w in (float(x) for x in args.weights.split(",")):
        share = (1 + w) * per_frame / (1 + w * per_frame)  # weights 1 + w on objects, 1 elsewhere
        print(f"| {w:g} | {share.mean():.1%} |")


if __name__ == "__main__":
    main()
