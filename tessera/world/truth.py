"""Ground truth of a rendered clip: per-frame boxes, visibility, depth, 3D state, camera, events.

`clip_truth` gives a JSON-ready dict; `clip_arrays` the per-pixel arrays (object ids and depth) for a
`.npz`. Object ids are 1-based (0 is background): object k of the scene is id k + 1.
Visible fraction = visible pixels / pixels the object would cover if it were alone in the scene
(both counted inside the frame). Visibility events are measured on the rendered frames: an object is
"hidden" when less than HIDDEN_FRACTION of it is visible while some of it is inside the frame, and
has "left" the frame when no pixel of it would be inside the frame.
"""

from __future__ import annotations

import numpy as np
import torch

from tessera.world.render import RenderOutput
from tessera.world.scene import Scene

HIDDEN_FRACTION = 0.05


def boxes(ids: torch.Tensor, n_objects: int) -> torch.Tensor:
    """(T, K, 4) float boxes (x0, y0, x1, y1) in pixels, x1/y1 exclusive, from an id map (T, H, W);
    -1 where the object has no visible pixel."""
    t_len, h, w = ids.shape
    out = torch.full((t_len, n_objects, 4), -1.0)
    for k in range(n_objects):
        mask = ids == k + 1
        cols, rows = mask.any(dim=1), mask.any(dim=2)  # (T, W), (T, H)
        seen = cols.any(dim=1)
        xs = torch.arange(w).expand(t_len, w)
        ys = torch.arange(h).expand(t_len, h)
        x0 = torch.where(cols, xs, w).amin(1)
        x1 = torch.where(cols, xs, -1).amax(1) + 1
        y0 = torch.where(rows, ys, h).amin(1)
        y1 = torch.where(rows, ys, -1).amax(1) + 1
        box = torch.stack([x0, y0, x1, y1], dim=1).float()
        out[:, k] = torch.where(seen[:, None], box, out[:, k])
    return out


def visibility(ids: torch.Tensor, coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(visible pixels (T, K), visible fraction (T, K)); the fraction is 0 where the object would cover
    no pixel of the frame."""
    n = coverage.shape[1]
    visible = torch.stack([(ids == k + 1).flatten(1).sum(1) for k in range(n)], dim=1)
    fraction = torch.where(coverage > 0, visible.float() / coverage.clamp(min=1).float(), 0.0)
    return visible, fraction


def measured_events(fraction: torch.Tensor, coverage: torch.Tensor) -> list[dict]:
    """Visibility events from per-frame state: hidden / reappear (behind another object) and leave /
    return (outside the frame), each with its frame index and 0-based object index."""
    events = []
    t_len, n = fraction.shape
    for k in range(n):
        inside = coverage[:, k] > 0
        hidden = inside & (fraction[:, k] < HIDDEN_FRACTION)
        for state, (on, off) in ((inside, ("return", "leave")), (~hidden, ("reappear", "hidden"))):
            for f in range(1, t_len):
                if bool(state[f]) != bool(state[f - 1]):
                    events.append({"kind": on if state[f] else off, "frame": f, "object": k})
    return sorted(events, key=lambda e: (e["frame"], e["object"]))


def clip_truth(scene: Scene, out: RenderOutput, b: int = 0) -> dict:
    """Everything known about clip `b` of a render, as plain lists for JSON."""
    n = len(scene.objects)
    ids, coverage = out.ids[b].cpu(), out.coverage[b, :, :n].cpu()
    visible, fraction = visibility(ids, coverage)
    box = boxes(ids, n)
    traj = out.trajectories[b]
    pose = np.zeros((scene.frames, 4, 4))
    pose[:, :3, :3], pose[:, :3, 3], pose[:, 3, 3] = out.world_from_camera[b], out.eye[b], 1.0
    occ = out.occlusion[b, :, :n, :n].cpu()
    frames = []
    for f in range(scene.frames):
        frames.append({
            "frame": f,
            "world_from_camera": _r(pose[f]),
            "objects": [{
                "id": k + 1,
                "box": _r(box[f, k]) if box[f, k, 0] >= 0 else None,
                "visible_pixels": int(visible[f, k]),
                "alone_pixels": int(coverage[f, k]),
                "visible_fraction": round(float(fraction[f, k]), 4),
                "position": _r(traj.pos[f, k]),
                "velocity": _r(traj.vel[f, k]),
                "hidden_by": [i + 1 for i in range(n) if bool(occ[f, i, k])],
            } for k in range(n)],
        })  # fmt: skip
    physical = [{"kind": e.kind, "frame": e.frame, "object": e.subject, "other": e.other}
                for e in traj.events if e.kind in ("bounce", "land", "collide")]  # fmt: skip
    events = sorted(physical + measured_events(fraction, coverage), key=lambda e: (e["frame"], e["object"]))
    return {
        "objects": [_describe(k, o) for k, o in enumerate(scene.objects)],
        "camera": {"move": scene.camera.move, "direction": scene.camera.direction, "K": _r(out.k[b]),
                   "convention": "OpenCV: x right, y down, z forward; world y up, ground y = 0"},  # fmt: skip
        "ground": scene.ground, "time_of_day": scene.time_of_day, "fps": scene.fps,
        "size": [int(ids.shape[2]), int(ids.shape[1])], "events": events, "frames": frames,
    }  # fmt: skip


def _describe(k: int, o) -> dict:
    """The scene description of object k (ids 1-based, partner 0 = none)."""
    keys = ("shape", "colour", "size", "material", "motion", "direction")
    return {
        "id": k + 1,
        **{key: getattr(o, key) for key in keys},
        "partner": o.partner + 1 if o.partner >= 0 else 0,
    }


def clip_arrays(out: RenderOutput, b: int = 0) -> dict[str, np.ndarray]:
    """Per-pixel truth of clip `b`: `ids` uint8 (T, H, W) (instance masks: ids == k + 1) and `depth`
    float16 (T, H, W) camera z in metres, inf for sky."""
    return {"ids": out.ids[b].cpu().numpy(), "depth": out.depth[b].cpu().numpy().astype(np.float16)}


def _r(x) -> list:
    """Rounded nested list for compact JSON."""
    return np.round(np.asarray(x, dtype=np.float64), 4).tolist()
