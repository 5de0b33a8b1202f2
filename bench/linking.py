"""Does the judge count a soft object once, and still find it? The scene parser's judge as shipped and two
variants, on the same held-out renders, clean and blurred (about what a VAE round trip does).

    python bench/linking.py [--scenes 24] [--frames 9]
    python bench/linking.py --truth-suite full --judge share --out runs/truth-share   # the truth, judged so
    python bench/linking.py --write-judge share --out runs/judge   # the variant's parser folder alone

The shipped linker (`tessera.eval.tracks.link_tracks`) joins a detection to a live track only when the
centroid distance plus 0.3 per differing colour or shape label is under 0.25 frame widths, so an object
whose label flips from one frame to the next starts a new track; a named object is then found by a track
whose area-weighted vote names its shape and colour. The variants: `distance` gates candidates by distance
alone and uses the labels only to rank them (`labels_gate: false`), so a flickering object stays one track,
but its one vote may name the other label; `share` links by distance and finds a named object by the track
whose detections carry its shape and colour for at least 0.3 of their area (`find_share: 0.3`). All link
the same detections of each clip (the parser runs once per clip), scored as `parser_accuracy` scores the
shipped one: `count` (1 - |significant tracks - objects seen| / objects) and `tracks` (each object found
by its shape and colour with the right size). A variant is a copy of the shipped parser folder whose
config.json says so (`--write-judge`); `tessera eval --parser FOLDER` takes it, `--truth-suite` runs
`tessera eval --truth` with it: the ceiling a judge must keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from tessera.eval.parser import DEFAULT_DIR, detect, load_parser, predict
from tessera.eval.parser_train import BLURRED_SIGMA, gaussian_blur, render_pool
from tessera.eval.tracks import COLOUR_NAMES, MIN_AREA, SHAPES, SIZE_NAMES, ClipParse, link_tracks

JUDGES = {  # parser config.json fields of each judge
    "shipped": {"labels_gate": True, "find_share": 0.0},
    "distance": {"labels_gate": False, "find_share": 0.0},
    "share": {"labels_gate": False, "find_share": 0.3},
}


def write_judge(name: str, folder: Path) -> Path:
    """A copy of the shipped parser folder that judges as JUDGES[name] says."""
    shutil.copytree(DEFAULT_DIR, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text()) | JUDGES[name]
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=24)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--truth-suite", help="score the truth on this suite (quick, full) with --judge")
    ap.add_argument("--judge", choices=JUDGES, default="share", help="the variant of --truth-suite")
    ap.add_argument("--write-judge", choices=JUDGES, help="only write this judge's parser folder to --out")
    ap.add_argument("--out", default="runs/truth-linking", help="results folder")
    args = ap.parse_args()
    if args.write_judge:
        print(f"wrote {write_judge(args.write_judge, Path(args.out) / f'parser-{args.write_judge}')}")
        return
    if args.truth_suite:
        from tessera.eval.suite import eval_command  # only this mode runs the suite

        judge = write_judge(args.judge, Path(args.out) / f"parser-{args.judge}")
        results = eval_command(
            suite=args.truth_suite, out=Path(args.out), truth=True, device="cpu", parser=judge
        )
        print(json.dumps(results["metrics"], indent=1))
        return
    scenes, frames, size = args.scenes, args.frames, 128
    parser = load_parser(None, "cpu")
    pool = render_pool(scenes, frames, size, "heldout", 10_000, "cpu")
    print(f"held-out split, {scenes} scenes x {frames} frames at {size}x{size}, the shipped parser")
    print("| frames | judge | count | tracks |\n|---|---|---|---|")
    for blur in (0.0, BLURRED_SIGMA):
        scores = {name: ([], []) for name in JUDGES}
        for c in range(scenes):
            sl = slice(c * frames, (c + 1) * frames)
            video, ids = pool["frames"][sl].cpu(), pool["ids"][sl].cpu()
            if blur > 0:
                x = gaussian_blur(video.permute(0, 3, 1, 2).float(), blur)
                video = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            dets, comp = detect(predict(parser, video.numpy()))
            shown = torch.stack([(ids == k).flatten(1).sum(1) for k in range(1, 5)], 1) >= MIN_AREA * size**2
            seen = int((shown.sum(0) >= max(2, np.ceil(0.15 * frames))).sum())
            for name, judge in JUDGES.items():
                tracks = link_tracks(dets, frames, labels_gate=judge["labels_gate"])
                parse = ClipParse(tracks, frames, comp, dets, judge["find_share"])
                if seen:
                    scores[name][0].append(max(0.0, 1 - abs(len(parse.significant()) - seen) / seen))
                for k in range(1, 5):
                    mask = ids == k
                    if mask.any():
                        named = (("shape", SHAPES), ("colour", COLOUR_NAMES), ("size", SIZE_NAMES))
                        want = [names[pool[a][sl][mask][0]] for a, names in named]
                        track = parse.find(want[0], want[1])
                        scores[name][1].append(track is not None and track.size == want[2])
        for name, (count, found) in scores.items():
            kind = "clean" if blur == 0 else f"blurred, sigma {blur} px"
            print(f"| {kind} | {name} | {np.mean(count):.3f} | {np.mean(found):.3f} |")


if __name__ == "__main__":
    main()
