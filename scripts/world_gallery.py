"""Render example world clips into one contact sheet with their captions (the README's picture).

    python scripts/world_gallery.py [--out docs/images/world_examples.png] [--size 160]

Each row is one clip: six evenly spaced frames under its short and detailed caption. The scenes are
drawn by the sampler from fixed seeds, chosen to show different shapes, motions, times of day,
grounds and camera moves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tessera.video import contact_sheet
from tessera.world import WorldConfig, WorldSampler, captions, render
from tessera.world.scene import CameraPath, Object, Scene

SEEDS = (3, 8, 21, 34)


def handmade() -> list[Scene]:
    """Two scenes written out by hand: an occlusion and a collision at night."""
    pass_behind = Scene(
        (
            Object("cube", "yellow", "large", "matte", "static", x=0.3, z=0.9, yaw=0.0),
            Object("sphere", "purple", "small", "shiny", "pass_behind", direction="right", partner=0),
            Object("cone", "cyan", "medium", "matte", "spin", x=-2.2, z=-1.5),
        ),
        CameraPath("static", distance=8.0),
        "grass",
        "morning",
        seed=1,
    )
    collide = Scene(
        (
            Object("sphere", "red", "medium", "shiny", "collide", x=-1.8, z=0.0, partner=1),
            Object("cylinder", "white", "large", "matte", "collide", x=1.6, z=0.0, partner=0),
            Object("octahedron", "orange", "medium", "matte", "bounce", x=1.0, z=-2.0, height=1.6),
        ),
        CameraPath("orbit", "left", distance=8.0),
        "wood",
        "night",
        seed=2,
    )
    return [pass_behind, collide]


def main() -> None:
    """Render the examples and write the PNG."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/images/world_examples.png"))
    ap.add_argument("--size", type=int, default=160)
    args = ap.parse_args()
    sampler = WorldSampler(WorldConfig(frames=33, fps=16.0))
    scenes = handmade() + [sampler.sample(s) for s in SEEDS]
    sheets = []
    for scene in scenes:
        frames = render(scene, (args.size, args.size)).frames[0]
        detailed, short = captions(scene)
        sheets.append(contact_sheet(frames, columns=6, max_frames=6, title=f'"{short}"\n{detailed}'))
    width = max(s.width for s in sheets)
    canvas = np.full((sum(s.height for s in sheets), width, 3), 255, np.uint8)
    y = 0
    for s in sheets:
        canvas[y : y + s.height, : s.width] = np.asarray(s.convert("RGB"))
        y += s.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(args.out)
    print(f"wrote {args.out} ({len(scenes)} clips)")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
