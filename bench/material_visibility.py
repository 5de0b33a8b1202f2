"""How often the world's pixels show an object's material (`tessera.caption.metrics.material_visible`:
rendered as sampled and with every material flipped, shiny <-> matte, some frame has at least `--pixels`
of the object's own pixels changed by more than `--levels` of 255). Where it does not show, no captioner
can beat a coin toss, so the share of visible objects bounds material accuracy: visible + half the rest.

    python bench/material_visibility.py [--clips 128] [--preset s-hybrid] [--split train] [--device auto]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from tessera.caption.metrics import material_visible
from tessera.caption.model import CAPTIONER_PRESETS
from tessera.caption.train import eval_seeds, world_clips
from tessera.pipeline import pick_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=128, help="scenes (the captioner evaluation's seeds)")
    ap.add_argument("--preset", default="s-hybrid", help="captioner preset whose input (frames, size) to use")
    ap.add_argument("--split", default="train", choices=["train", "heldout"])
    ap.add_argument("--levels", type=int, default=24, help="a pixel changes when some channel moves more")
    ap.add_argument("--pixels", type=int, default=3, help="changed pixels in one frame that make it visible")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device, cfg = pick_device(args.device), CAPTIONER_PRESETS[args.preset]
    # the clips of the captioner evaluation (`caption.train.evaluate`)
    frames, scenes = world_clips(cfg, args.split, eval_seeds(args.clips), device)
    visible = material_visible(scenes, frames, args.levels, args.pixels)
    by: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for scene, flags in zip(scenes, visible, strict=True):
        for ob, seen in zip(scene.objects, flags, strict=True):
            for key, value in (("shape", ob.shape), ("size", ob.size), ("material", ob.material),
                               ("time of day", scene.time_of_day)):  # fmt: skip
                by[key][value].append(seen)
    flat = [f for flags in visible for f in flags]
    share = sum(flat) / len(flat)
    print(f"{args.clips} {args.split} scenes, {len(flat)} objects, {cfg.frames}x{cfg.size}x{cfg.size}: "
          f"material visible for {share:.1%}; material accuracy at most {(1 + share) / 2:.3f}")  # fmt: skip
    print("| group | value | objects | material visible |\n|---|---|---|---|")
    for key in ("shape", "size", "material", "time of day"):
        for value, flags in sorted(by[key].items()):
            print(f"| {key} | {value} | {len(flags)} | {sum(flags) / len(flags):.0%} |")


if __name__ == "__main__":
    main()
