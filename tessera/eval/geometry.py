"""Is the video a projection of one rigid, physical 3D world? `consistency_3d` and `physics`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tessera.eval.motion import corners, grey, track_points
from tessera.eval.score import Score, at_most, mean
from tessera.eval.tracks import ClipParse, Track
from tessera.world.physics import simulate
from tessera.world.scene import Scene

MIN_POINTS = 8


def rigidity(video: np.ndarray, parse: ClipParse, count: int = 48) -> dict:
    """Tomasi-Kanade figure of a clip: background corners are tracked (KLT) from frame 0 for as many
    frames as at least MIN_POINTS survive; the centred 2F x P track matrix of a rigid scene under an
    affine camera has rank 3 (Tomasi & Kanade 1992), so the RMS of its energy beyond the third singular
    value (frame widths) measures non-rigidity. Also returns the frames covered and the mean motion."""
    frames = grey(video)
    t_len, _, h, w = frames.shape
    inst = torch.from_numpy(parse.instances.astype(np.float32))[:, None]
    objects = F.max_pool2d((F.interpolate(inst, size=(h, w), mode="nearest") > 0).float(), 7, 1, 3) > 0
    pts = corners(frames[:1], count, ~objects[:1])
    if len(pts) < MIN_POINTS:
        return {"residual": float("inf"), "frames": 0, "motion": 0.0, "points": len(pts)}
    pos, alive = track_points(frames, pts)
    # Points also must stay off the objects (a corner a moving object slides over is not static).
    idx = np.clip(np.round(pos).astype(int), 0, [w - 1, h - 1])
    on_obj = objects[:, 0].numpy()[np.arange(t_len)[:, None], idx[..., 1], idx[..., 0]]
    alive = np.logical_and.accumulate(alive & ~on_obj, axis=0)
    span = int(np.sum(alive.sum(1) >= MIN_POINTS))
    if span < 3:
        return {"residual": float("inf"), "frames": span, "motion": 0.0, "points": int(alive[0].sum())}
    keep = alive[span - 1]
    tracks = pos[:span, keep] / w  # (F, P, 2)
    m = tracks.transpose(0, 2, 1).reshape(2 * span, -1)  # (2F, P): x rows then y rows per frame
    m = m - m.mean(1, keepdims=True)
    s = np.linalg.svd(m, compute_uv=False)
    residual = float(np.sqrt((s[3:] ** 2).sum() / m.size))
    motion = float(np.linalg.norm(tracks - tracks[:1], axis=-1).mean())
    return {"residual": residual, "frames": span, "motion": motion, "points": int(keep.sum())}


def consistency_3d(
    scene: Scene, video: np.ndarray, parse: ClipParse, truth_video: np.ndarray, truth_parse: ClipParse
) -> Score:
    """Under camera motion (None for a still camera): (rank-3 residual no worse than the truth's) x
    (fraction of the truth's frames the tracks survive) x (background motion no less than the
    truth's, so a frozen video cannot pass)."""
    if scene.camera.move == "static":
        return Score(None, {})
    got, want = rigidity(video, parse), rigidity(truth_video, truth_parse)
    if want["frames"] < 3:
        return Score(None, {"note": "the truth render has too little texture to track", "truth": want})
    value = at_most(got["residual"], want["residual"], 2e-3)
    value *= min(1.0, got["frames"] / want["frames"]) * min(1.0, got["motion"] / max(want["motion"], 1e-6))
    return Score(
        value,
        {
            "residual": got["residual"],
            "truth_residual": want["residual"],
            "frames": got["frames"],
            "truth_frames": want["frames"],
            "motion": got["motion"],
            "truth_motion": want["motion"],
        },
    )


def parabola_fits(track: Track, bounds: list[int]) -> tuple[list[float], list[float]]:
    """Per segment between the impact frames `bounds` with at least 4 seen frames: (RMS residual of a
    quadratic fit to the track's image height, in units of its apparent radius; the fitted second
    derivative, per frame squared, positive when curving downward as gravity does since image y points
    down). Segments too short to fit are None."""
    radius = np.sqrt(np.nanmedian(track.area) / np.pi)
    res, curv = [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        t = np.arange(a, b)
        t = t[track.present[a:b]]
        if len(t) < 4:
            res.append(None)
            curv.append(None)
            continue
        coef, resid, *_ = np.polyfit(t, track.centroid[t, 1], 2, full=True)
        res.append(float(np.sqrt(resid[0] / len(t)) / radius) if len(resid) else 0.0)
        curv.append(float(2 * coef[0]))
    return res, curv


def _flight_score(got: Track | None, want: Track, bounds: list[int]) -> float | None:
    """Mean over the truth's fitted segments of (residual no worse than the truth's) x (curving down
    at least 30% as hard as the truth); None if the truth has no fitted segment."""
    r_want, c_want = parabola_fits(want, bounds)
    r_got, c_got = parabola_fits(got, bounds) if got is not None else ([None] * len(r_want),) * 2
    scores = []
    for rg, cg, rw, cw in zip(r_got, c_got, r_want, c_want, strict=True):
        if rw is None:
            continue
        ok = rg is not None and cg is not None and cg >= 0.3 * cw
        scores.append(at_most(rg, rw, 0.05) if ok else 0.0)
    return float(np.mean(scores)) if scores else None


def physics(scene: Scene, parse: ClipParse, truth_parse: ClipParse) -> Score:
    """Falling and bouncing objects follow parabolas between impacts (residual no worse than the
    truth's, times the fraction of flights curving with gravity); colliding objects never pass through
    each other (their left-right order agrees with the truth's in >= 90% of frames). None if the
    prompt has neither."""
    items: dict[str, float] = {}
    events = simulate(scene).events
    for i, ob in enumerate(scene.objects):
        name = f"{ob.colour} {ob.shape}"
        if ob.motion in ("bounce", "fall"):
            hits = sorted({e.frame for e in events if e.subject == i and e.kind in ("bounce", "land")})
            bounds = [0, *hits, scene.frames] if ob.motion == "bounce" else [0, *hits[:1]]
            want = truth_parse.find(ob.shape, ob.colour)
            flight = None if want is None else _flight_score(parse.find(ob.shape, ob.colour), want, bounds)
            if flight is not None:
                items[f"{name} flight"] = flight
        kept = (
            _order_kept(scene, i, ob.partner, parse, truth_parse)
            if ob.motion == "collide" and ob.partner > i
            else None
        )
        if kept is not None:
            items[f"{name} collision"] = kept
    return Score(mean(list(items.values())), items)


def _order_kept(scene: Scene, i: int, j: int, parse: ClipParse, truth_parse: ClipParse) -> float | None:
    """1 if the sign of x_i - x_j in the image agrees with the truth's in >= 90% of the frames (None if
    the truth parse does not see both)."""
    a, b = scene.objects[i], scene.objects[j]
    ga, gb = parse.find(a.shape, a.colour), parse.find(b.shape, b.colour)
    ta, tb = truth_parse.find(a.shape, a.colour), truth_parse.find(b.shape, b.colour)
    if ta is None or tb is None:
        return None
    if ga is None or gb is None:
        return 0.0
    both = ga.present & gb.present & ta.present & tb.present
    if both.sum() < 3:
        return 0.0
    got = np.sign(ga.centroid[both, 0] - gb.centroid[both, 0])
    want = np.sign(ta.centroid[both, 0] - tb.centroid[both, 0])
    return float((got == want).mean() >= 0.9)
