"""Scoring captions against the world's truth: per-object attribute F1, motion and camera accuracy.

A caption is parsed back to facts (`parse.parse`) and its objects are matched one-to-one to the scene's
objects by the assignment (over all permutations: at most 4 objects) that agrees on the most
attributes. Attribute F1 counts (object, attribute, value) facts: a true positive is a stated attribute
equal to its matched object's truth; precision divides by the attributes the caption states, recall by
the scene's (4 per object). Motion accuracy is the share of scene objects whose matched caption object
has the right motion; camera accuracy asks for the right move and direction.

The world does not always show an object's material: a shiny object mirrors the sky and the ground, but
one that is tiny, far or mostly hidden may not change a pixel (about 5-7% of objects; in the world before
2026-11-25 the only sign was a narrow sun highlight, which 62% never showed). `material_visible` finds the
objects whose pixels change when their material is flipped, and `score` given those flags also reports
material accuracy on them alone (on the rest no captioner can beat a coin toss).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import torch

from tessera.caption.parse import Facts, ParseError, parse, scene_facts
from tessera.world import render

ATTRIBUTES = ("shape", "colour", "size", "material")
FLIP = {"shiny": "matte", "matte": "shiny"}


def material_visible(
    scenes: list, frames: torch.Tensor, levels: int = 24, pixels: int = 3, batch: int = 256
) -> list[list[bool]]:
    """Per scene, per object: whether its material shows in `frames`, the scenes' uint8 renders
    (N, T, S, S, 3), i.e. whether in some frame at least `pixels` of its own pixels change by more than
    `levels` of 255 in some channel when every object's material is flipped (shiny <-> matte). Only the
    flipped scenes are rendered (`batch` at a time); materials do not move objects, so their ids hold."""

    def flipped(scene):
        objects = tuple(dataclasses.replace(ob, material=FLIP[ob.material]) for ob in scene.objects)
        return dataclasses.replace(scene, objects=objects)

    out = []
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        b = render([flipped(s) for s in chunk], tuple(frames.shape[2:4]), frames.device)
        changed = (frames[start : start + len(chunk)].int() - b.frames.int()).abs().amax(-1) > levels
        for i, scene in enumerate(chunk):  # changed[i]: (T, H, W)
            own = [
                (changed[i] & (b.ids[i] == k + 1)).sum(dim=(1, 2)).max() for k in range(len(scene.objects))
            ]
            out.append([bool(n >= pixels) for n in own])  # object k's most changed pixels in one frame
    return out


def match(pred: Facts, truth: Facts) -> list[tuple[int, int]]:
    """(pred index, truth index) pairs of the best one-to-one matching by agreeing attributes."""
    n_p, n_t = len(pred.objects), len(truth.objects)
    best, best_pairs = -1, []
    small, large = (n_p, n_t) if n_p <= n_t else (n_t, n_p)
    for perm in itertools.permutations(range(large), small):
        pairs = [(i, j) for i, j in enumerate(perm)] if n_p <= n_t else [(j, i) for i, j in enumerate(perm)]
        agree = sum(_agree(pred.objects[i], truth.objects[j]) for i, j in pairs)
        if agree > best:
            best, best_pairs = agree, pairs
    return best_pairs


def _agree(p, t) -> int:
    return sum(getattr(p, a) is not None and getattr(p, a) == getattr(t, a) for a in ATTRIBUTES) + (
        p.motion == t.motion
    )


def score(caption: str, scene, visible: list[bool] | None = None) -> Counter:
    """Counts for one caption of `scene`: tp/pred/true per attribute, motion and camera hits; with
    `visible` (per scene object, from `material_visible`) also material hits on the visible ones."""
    try:
        pred = parse(caption)
    except ParseError:  # e.g. a caption naming more objects than the world holds: nothing it says counts
        pred = Facts()
    truth = scene_facts(scene)
    c: Counter = Counter()
    for a in ATTRIBUTES:
        c[f"{a}.pred"] += sum(getattr(o, a) is not None for o in pred.objects)
        c[f"{a}.true"] += len(truth.objects)
    for i, j in match(pred, truth):
        p, t = pred.objects[i], truth.objects[j]
        for a in ATTRIBUTES:
            c[f"{a}.tp"] += getattr(p, a) is not None and getattr(p, a) == getattr(t, a)
        c["motion.hit"] += p.motion == t.motion
        c["material_seen.hit"] += bool(visible and visible[j]) and p.material == t.material
    if visible is not None:
        c["material_seen.objects"] += sum(visible)
    c["objects"] += len(truth.objects)
    c["count.hit"] += len(pred.objects) == len(truth.objects)
    c["camera.hit"] += (pred.camera, pred.camera_direction) == (truth.camera, truth.camera_direction)
    c["clips"] += 1
    return c


def summarise(c: Counter) -> dict[str, float]:
    """F1 per attribute and overall, motion / camera / object-count accuracy from summed counts."""
    out: dict[str, float] = {}
    tp = pred = true = 0
    for a in ATTRIBUTES:
        out[f"{a}_f1"] = _f1(c[f"{a}.tp"], c[f"{a}.pred"], c[f"{a}.true"])
        tp, pred, true = tp + c[f"{a}.tp"], pred + c[f"{a}.pred"], true + c[f"{a}.true"]
    out["attribute_f1"] = _f1(tp, pred, true)
    out["motion_accuracy"] = c["motion.hit"] / max(1, c["objects"])
    out["camera_accuracy"] = c["camera.hit"] / max(1, c["clips"])
    out["object_count_accuracy"] = c["count.hit"] / max(1, c["clips"])
    if c["material_seen.objects"]:  # material accuracy on the objects whose material shows
        out["material_seen_accuracy"] = c["material_seen.hit"] / c["material_seen.objects"]
    out["clips"] = c["clips"]
    return out


def _f1(tp: int, pred: int, true: int) -> float:
    return 2 * tp / (pred + true) if pred + true else 1.0
