"""Does the video show what the prompt says? `text_alignment` and `object_permanence`.

Both read the prompt's scene (what must be there) and a parse of the video. Motions and the camera are
judged against the truth render of the same prompt parsed by the same parser: the truth render is what
the prompt means, so a correct video matches it and the ceiling is exact.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tessera.eval.motion import global_motion, grey
from tessera.eval.score import Score, mean
from tessera.eval.tracks import ClipParse, Track
from tessera.world.scene import Scene

STILL_MOTIONS = ("static", "spin")
STATIC_CAMERA = 0.03  # cumulative background motion (frame widths) below which a camera counts as still
EVENT_MOTIONS = ("pass_behind", "leave_return")


def text_alignment(
    video: np.ndarray, scene: Scene, parse: ClipParse, truth_video: np.ndarray, truth_parse: ClipParse
) -> Score:
    """Mean of five checks (each in [0, 1]): named objects found by colour and shape; their sizes;
    the object count; named motions (image path of each moving object against the truth's, cosine
    > 0.7); the camera move (background motion against the truth's). Follows the object, count, colour
    and motion dimensions of VBench (Huang et al. 2023) with the world's truth as the judge."""
    found, sizes, motions = [], [], []
    for ob in scene.objects:
        tr = parse.find(ob.shape, ob.colour)
        found.append(float(tr is not None))
        sizes.append(float(tr is not None and tr.size == ob.size))
        if ob.motion not in STILL_MOTIONS:
            motions.append(_motion_match(tr, truth_parse.find(ob.shape, ob.colour)))
    n_seen, n = len(parse.significant()), len(scene.objects)
    count = max(0.0, 1.0 - abs(n_seen - n) / n)
    camera, cam_info = camera_match(video, parse, truth_video, truth_parse)
    parts = {
        "objects": float(np.mean(found)),
        "sizes": float(np.mean(sizes)),
        "count": count,
        "motion": mean([m for m in motions if m is not None]),
        "camera": camera,
    }
    return Score(mean(list(parts.values())), parts | {"objects_seen": n_seen, "camera_detail": cam_info})


def objects_right(scene: Scene, parse: ClipParse, truth_parse: ClipParse, exact: bool = False) -> Score:
    """1 if the video shows every named object in its shape and colour, else 0: the prompt is "fully right",
    and the share of such prompts is the text target. With `exact`, also no more objects than the truth render
    shows to the same parser, so a video that draws the named objects among copies of them (or among
    objects split by blur) is not right: `text_alignment`'s count part, as a verdict."""
    found = all(parse.find(ob.shape, ob.colour) is not None for ob in scene.objects)
    seen, truth_seen = len(parse.significant()), len(truth_parse.significant())
    right = found and (not exact or seen <= truth_seen)
    return Score(float(right), {"all_found": found, "objects_seen": seen, "truth_seen": truth_seen})


def _signature(track: Track) -> np.ndarray:
    """(T, 3) displacement of a track from its first frame: centroid x, y and half log-area (scale)."""
    sig = np.concatenate([track.centroid, 0.5 * np.log(track.area)[:, None]], 1)
    first = int(np.argmax(track.present))
    return sig - sig[first]


def _motion_match(track: Track | None, truth: Track | None) -> float | None:
    """1 if the track's image path points the way the truth's does (cosine > 0.7 over the frames both
    are seen), None where the truth object barely moves in the image."""
    if truth is None:
        return None
    want = _signature(truth)
    if np.nanmax(np.linalg.norm(np.nan_to_num(want), axis=1)) < 0.02:
        return None
    if track is None:
        return 0.0
    both = track.present & truth.present
    if both.sum() < 3:
        return 0.0
    got = _signature(track)
    a, b = got[both] - got[both][0], want[both] - want[both][0]
    cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    return float(cos > 0.7)


def camera_signature(video: np.ndarray, parse: ClipParse) -> np.ndarray:
    """(T - 1, 3) cumulative background motion (dx, dy in frame widths, log-zoom), objects masked."""
    frames = grey(video)
    inst = torch.from_numpy(parse.instances.astype(np.float32))[:, None]
    objects = F.interpolate(inst, size=frames.shape[-2:], mode="nearest") > 0
    keep = ~(F.max_pool2d(objects.float(), 5, 1, 2) > 0)  # dilate objects by 2 px
    return np.cumsum(global_motion(frames, keep), axis=0)


def camera_match(
    video: np.ndarray, parse: ClipParse, truth_video: np.ndarray, truth_parse: ClipParse
) -> tuple[float, dict]:
    """Does the background move as in the truth render? A still truth camera wants a still video
    (cumulative motion < 2 * STATIC_CAMERA); a moving one wants a path with cosine > 0.7 to the truth's
    and a length within a factor 3."""
    got, want = camera_signature(video, parse), camera_signature(truth_video, truth_parse)
    if len(want) == 0:
        return 1.0, {}
    g_len, w_len = float(np.abs(got).max()), float(np.abs(want).max())
    info = {"moved": round(g_len, 4), "truth_moved": round(w_len, 4)}
    if w_len < STATIC_CAMERA:
        return float(g_len < 2 * STATIC_CAMERA), info
    cos = float((got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-9))
    info["cosine"] = round(cos, 3)
    return float(cos > 0.7 and 1 / 3 < g_len / w_len < 3), info


def object_permanence(scene: Scene, parse: ClipParse, truth_parse: ClipParse) -> Score:
    """Objects that pass behind another or leave and return must come back with the same shape, colour
    and size (1 per such object if the track named by the prompt is seen in most of the truth's frames
    before the gap and after it, voting the prompt's attributes after it); and the number of visible
    objects per frame must follow the truth's (1 - mean |difference| / max count)."""
    events = {}
    for ob in scene.objects:
        if ob.motion in EVENT_MOTIONS:
            events[f"{ob.colour} {ob.shape}"] = _returns(ob, parse, truth_parse)
    got, want = parse.count(), truth_parse.count()
    stability = float(max(0.0, 1.0 - np.abs(got - want).mean() / max(1, want.max())))
    return Score(mean([*events.values(), stability]), {"returns": events, "count_stability": stability})


def _returns(ob, parse: ClipParse, truth_parse: ClipParse) -> float:
    """1 if the object is there before its gap and after it, with the prompt's attributes after it."""
    truth = truth_parse.find(ob.shape, ob.colour)
    t_len = parse.frames
    before, after = np.zeros(t_len, bool), np.zeros(t_len, bool)
    if truth is not None and truth.present.any():
        seen = np.flatnonzero(truth.present)
        gaps = np.flatnonzero(np.diff(seen) > 1)
        split = seen[gaps[0]] + 1 if len(gaps) else seen[len(seen) // 2]
        before[:split] = truth.present[:split]
        after[split:] = truth.present[split:]
    else:
        before[: t_len // 3], after[2 * t_len // 3 :] = True, True
    track = parse.find(ob.shape, ob.colour)
    if track is None or not after.any() or not before.any():
        return 0.0
    there = (track.present & before).sum() >= 0.5 * before.sum() and (
        track.present & after
    ).sum() >= 0.5 * after.sum()
    return float(there and track.vote(after) == (ob.shape, ob.colour, ob.size))
