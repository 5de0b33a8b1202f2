"""Batched ray caster in PyTorch: the same code renders on the CPU and on CUDA.

Work is organised in *rows*: one row is one frame of one scene (B scenes x T frames = B*T rows) with
its own camera, object poses and light. Whole images are traced separably: a pixel's ray is a
per-column term plus a per-line term, and since the camera never rolls, the ground distance is per
line, so sky and ground are shaded densely with per-row and per-line factors broadcast (channels
first, no per-pixel gathers). Objects are found per (pixel, object) pair: the pixels of each object's
screen box, culled by its bounding sphere (per-shape radius), then intersected exactly (analytic
shapes in object space, see shapes.py) with each shape's pairs contiguous, so the cost follows the
pixels objects cover. Shadows are one ray per lit point toward the sun (object points and ground
pixels inside each shadow's screen box, traced together). Anti-aliasing re-renders only pixels on a
silhouette with 2 extra rotated-grid samples (edge-adaptive supersampling), and distant ground texture
fades to its mean, so the horizon does not shimmer. Rows are processed in chunks of at most `max_rays`
rays, which bounds memory for 2048x2048 stills and large batches alike.

Determinism: on the CPU a scene renders to the same bytes in any process and on any thread count (a
test hashes two processes on 1 and 2 threads). Every product of vectors is written out elementwise
(`row_times`) rather than handed to a matrix-product kernel, whose rounding may follow the thread
count or the memory alignment; reductions are min/max (order-free) or over 3 components. On CUDA the
same code uses no atomic sums, so reruns on one GPU should repeat, but CPU and GPU bytes may differ
by float rounding in exp/pow (not measured: no GPU at hand when this was written).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from tessera.world import shading
from tessera.world.camera import camera_poses, intrinsics
from tessera.world.physics import Trajectory, simulate
from tessera.world.scene import COLOURS, SHAPES, Scene
from tessera.world.shapes import BOUND_RADII, INTERSECT

SHADOW_BIAS = 2e-3
INF = float("inf")
# Rays per chunk by default. On the CPU, chunks whose temporaries stay around 2 MB each run faster than
# larger ones (allocator and cache). On a GPU the renderer is bound by kernel launches and host syncs per
# chunk, so chunks are large: 2^26 rays peak at about 7.5 GiB (measured on an H100, torch 2.11); pass a
# smaller max_rays to render() where the GPU is shared with training.
CPU_RAYS, GPU_RAYS = 1 << 19, 1 << 26
# Extra samples for silhouette pixels (with the centre sample: 3 per pixel, a rotated-grid pattern).
SUBSAMPLES = torch.tensor([[-0.33, -0.17], [0.17, 0.33]])


@dataclass
class Rows:
    """Per-row (one frame of one scene) tensors; R rows, K object slots."""

    eye: torch.Tensor  # (R, 3) camera centre
    cam: torch.Tensor  # (R, 3, 3) world_from_camera (OpenCV axes)
    intr: torch.Tensor  # (R, 4) fx, fy, cx, cy
    pos: torch.Tensor  # (R, K, 3) object centres
    rot: torch.Tensor  # (R, K, 3, 3) world_from_object
    scale: torch.Tensor  # (R, K) half-extent
    bound: torch.Tensor  # (R, K) bounding sphere radius (shapes.BOUND_RADII * scale, 0.1% generous)
    shape: torch.Tensor  # (R, K) long, index into SHAPES
    active: torch.Tensor  # (R, K) bool, False for padding slots
    albedo: torch.Tensor  # (R, K, 3)
    shiny: torch.Tensor  # (R, K) 0 or 1
    light: torch.Tensor  # (R, 15) see shading.light_tensors
    night: torch.Tensor  # (R,) bool
    ground: torch.Tensor  # (R,) long, shading.GROUND_IDS
    seed: torch.Tensor  # (R,) long, texture noise seed

    def take(self, idx: torch.Tensor | slice) -> Rows:
        """The rows at `idx` (a slice or an index tensor)."""
        return Rows(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class RenderOutput:
    """Frames and per-pixel truth for B scenes of T frames at H x W, K object slots.

    frames (B, T, H, W, 3) uint8; ids (B, T, H, W) uint8 with 0 = background and k + 1 = object k;
    depth (B, T, H, W) float32 camera z in metres (inf for sky); coverage (B, T, K) int32 pixels each
    object would cover alone (occluders removed; out-of-frame parts not counted); occlusion (B, T, K, K)
    bool, [i, j] = object i hides some pixel of object j. The rest is the input state: trajectories,
    eye (B, T, 3), world_from_camera (B, T, 3, 3), K (B, 3, 3).
    """

    frames: torch.Tensor
    ids: torch.Tensor
    depth: torch.Tensor
    coverage: torch.Tensor
    occlusion: torch.Tensor
    trajectories: list[Trajectory]
    eye: np.ndarray
    world_from_camera: np.ndarray
    k: np.ndarray


def pack(scenes: list[Scene], width: int, height: int, device: torch.device | str) -> tuple[Rows, list]:
    """Simulate each scene and lay its state out as rows (scene-major: row = b * T + t)."""
    frames = {s.frames for s in scenes}
    if len(frames) != 1:
        raise ValueError(f"scenes rendered together need the same number of frames, got {sorted(frames)}")
    t_len, k_max = frames.pop(), max(len(s.objects) for s in scenes)
    trajs = [simulate(s) for s in scenes]
    b = len(scenes)
    pos, rot = np.zeros((b, t_len, k_max, 3)), np.tile(np.eye(3), (b, t_len, k_max, 1, 1))
    scale, shape, active = np.ones((b, k_max)), np.zeros((b, k_max), np.int64), np.zeros((b, k_max), bool)
    bound = np.zeros((b, k_max))
    albedo, shiny = np.zeros((b, k_max, 3)), np.zeros((b, k_max))
    eye, cam, intr = np.zeros((b, t_len, 3)), np.zeros((b, t_len, 3, 3)), np.zeros((b, 4))
    for i, (scene, traj) in enumerate(zip(scenes, trajs, strict=True)):
        n = len(scene.objects)
        pos[i, :, :n], rot[i, :, :n] = traj.pos, traj.rot
        for j, ob in enumerate(scene.objects):
            scale[i, j], shape[i, j], active[i, j] = ob.radius, SHAPES.index(ob.shape), True
            bound[i, j] = ob.radius * BOUND_RADII[shape[i, j]] * 1.001  # rounding never culls a grazing ray
            albedo[i, j], shiny[i, j] = COLOURS[ob.colour], float(ob.material == "shiny")
        eye[i], cam[i] = camera_poses(scene.camera, t_len)
        k = intrinsics(width, height, scene.camera.fov)
        intr[i] = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])

    def per_row(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:  # (B, ...) -> (B*T, ...)
        t = torch.as_tensor(x, dtype=dtype, device=device)
        return t[:, None].expand(b, t_len, *t.shape[1:]).reshape(b * t_len, *t.shape[1:])

    def flat(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:  # (B, T, ...) -> (B*T, ...)
        return torch.as_tensor(x, dtype=dtype, device=device).reshape(b * t_len, *x.shape[2:])

    light = np.stack([shading.light_array(s.time_of_day) for s in scenes])
    rows = Rows(
        eye=flat(eye), cam=flat(cam), intr=per_row(intr), pos=flat(pos), rot=flat(rot),
        scale=per_row(scale), bound=per_row(bound), shape=per_row(shape, torch.long),
        active=per_row(active, torch.bool),
        albedo=per_row(albedo), shiny=per_row(shiny), light=per_row(light),
        night=per_row(np.array([s.time_of_day == "night" for s in scenes]), torch.bool),
        ground=per_row(np.array([shading.GROUND_IDS[s.ground] for s in scenes]), torch.long),
        seed=per_row(np.array([s.seed % 100003 for s in scenes]), torch.long),
    )  # fmt: skip
    return rows, trajs


def directions(rows: Rows, uv: torch.Tensor) -> torch.Tensor:
    """World ray directions (R, P, 3) through pixel positions uv (R or 1, P, 2), scaled so that their
    camera-forward component is 1: a hit at parameter t then lies at camera depth t."""
    fx, fy, cx, cy = (rows.intr[:, i, None, None] for i in range(4))
    x, y = (uv[..., 0:1] - cx) / fx, (uv[..., 1:2] - cy) / fy  # (R, P, 1)
    right, down, forward = (rows.cam[:, None, :, i] for i in range(3))  # (R, 1, 3) each
    return x * right + y * down + forward


def _by_shape(rows: Rows, i: torch.Tensor, q: torch.Tensor):
    """Pairs (ray i, object q = row * K + slot) reordered so that each shape's pairs are contiguous
    (in INTERSECT order), and the count per shape (a host list: one sync)."""
    order, counts = _shape_order(rows, q)
    return i[order], q[order], counts


def _kept(rows: Rows, i: torch.Tensor, q: torch.Tensor, keep: torch.Tensor):
    """The pairs where `keep`; boolean selection keeps their shape grouping, so only recount."""
    i, q = i[keep], q[keep]
    return i, q, torch.bincount(rows.shape.flatten()[q], minlength=len(INTERSECT)).tolist()


def _passes_near(c: torch.Tensor, rb: torch.Tensor, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(...) bool: the ray o + t d (..., 3), t > 0, comes within `rb` (...) of the centre c (..., 3)."""
    oc = c - o
    dd = (d * d).sum(-1)
    tca = (oc * d).sum(-1)  # |d| times the distance along the ray to the closest approach
    return ((oc * oc).sum(-1) * dd - tca * tca <= rb * rb * dd) & (tca > -rb * dd.sqrt())


def _sphere_pairs(rows: Rows, r: torch.Tensor, o: torch.Tensor, d: torch.Tensor, valid=None):
    """(ray, object q = row * K + slot) pairs where rays o + t d (N, 3) of rows `r` (N,) pass within
    the bounding sphere of an object, ahead of the origin (only rays where `valid`, if given). Dense over
    N x K: used for small ray sets (shadow rays of object pixels, anti-aliasing samples)."""
    cand = _passes_near(rows.pos[r], rows.bound[r], o[:, None], d[:, None]) & rows.active[r]
    if valid is not None:
        cand &= valid[:, None]
    i, k = cand.nonzero(as_tuple=True)
    return i, r[i] * rows.scale.shape[1] + k


def _to_camera(rows: Rows, points: torch.Tensor) -> torch.Tensor:
    """Camera coordinates (R, ..., 3) of world points (R, ..., 3)."""
    shape = points.shape
    q = row_times(points.reshape(shape[0], -1, 3) - rows.eye[:, None], rows.cam[:, None])  # R^T (p - eye)
    return q.reshape(shape)


def row_times(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Row vectors v (..., 3) times matrices m (..., 3, 3), as v[0] m[0] + v[1] m[1] + v[2] m[2] in
    elementwise ops: every element rounds the same way whatever the thread count or memory alignment,
    which matrix-product kernels (BLAS picks them at run time) do not promise."""
    return v[..., 0:1] * m[..., 0, :] + v[..., 1:2] * m[..., 1, :] + v[..., 2:3] * m[..., 2, :]


def _full_boxes(boxes: torch.Tensor, behind: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Integer pixel boxes (x0, y0, x1, y1), whole image where a point was behind the camera."""
    full = torch.tensor([0.0, 0.0, width, height], device=boxes.device)
    boxes = torch.where(behind[..., None], full, boxes)
    lo = torch.floor(boxes[..., :2]) - 1
    hi = torch.ceil(boxes[..., 2:]) + 1
    size = torch.tensor([width, height], device=boxes.device)
    return torch.cat([torch.minimum(lo.clamp(min=0), size), torch.minimum(hi.clamp(min=0), size)], -1).long()


def _object_boxes(rows: Rows, width: int, height: int) -> torch.Tensor:
    """(R, K, 4) pixel boxes holding each object's bounding sphere: the corners (x +- r, z -+ r) of a
    camera-aligned box around it bound its projection."""
    q = _to_camera(rows, rows.pos)  # (R, K, 3)
    rb = rows.bound
    fx, fy, cx, cy = (rows.intr[:, i, None] for i in range(4))
    near, far = q[..., 2] - rb, q[..., 2] + rb
    behind = near < 0.05
    near = near.clamp(min=0.05)
    ext = []
    for axis, f, c in ((0, fx, cx), (1, fy, cy)):
        lo = torch.minimum((q[..., axis] - rb) / near, (q[..., axis] - rb) / far) * f + c
        hi = torch.maximum((q[..., axis] + rb) / near, (q[..., axis] + rb) / far) * f + c
        ext.append((lo, hi))
    boxes = torch.stack([ext[0][0], ext[1][0], ext[0][1], ext[1][1]], -1)
    return _full_boxes(boxes, behind, width, height)


def _shadow_boxes(rows: Rows, width: int, height: int) -> torch.Tensor:
    """(R, K, 4) pixel boxes holding the ground shadow of each object's bounding sphere: an ellipse
    around the centre's projection along the sun, semi-axes r / sun_y (along the sun) and r."""
    sun = rows.light[:, None, 0:3]  # (R, 1, 3)
    rb = rows.bound[..., None]
    centre = rows.pos - rows.pos[..., 1:2] / sun[..., 1:2] * sun  # (R, K, 3) on the ground
    along = torch.nn.functional.normalize(sun * torch.tensor([1.0, 0.0, 1.0], device=sun.device), dim=-1)
    across = torch.stack([-along[..., 2], torch.zeros_like(along[..., 0]), along[..., 0]], -1)
    a, b = along * rb / sun[..., 1:2], across * rb  # (R, K, 3)
    corners = torch.stack([centre + a + b, centre + a - b, centre - a + b, centre - a - b], 2)  # (R, K, 4, 3)
    q = _to_camera(rows, corners)
    behind = (q[..., 2] < 0.05).any(-1)
    z = q[..., 2].clamp(min=0.05)
    u = q[..., 0] / z * rows.intr[:, 0, None, None] + rows.intr[:, 2, None, None]
    v = q[..., 1] / z * rows.intr[:, 1, None, None] + rows.intr[:, 3, None, None]
    boxes = torch.stack([u.amin(-1), v.amin(-1), u.amax(-1), v.amax(-1)], -1)
    return _full_boxes(boxes, behind, width, height)


def _box_pairs(rows: Rows, boxes: torch.Tensor, width: int, n_rays: int):
    """(flat ray index, object q = row * K + slot, shape counts) for every pixel inside each row's
    object boxes (R, K, 4), grouped by shape: owners are sorted by shape before they are expanded."""
    k_max = rows.scale.shape[1]
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=0).flatten()
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=0).flatten()
    count = w * h * rows.active.flatten()
    sid = rows.shape.flatten()
    counts = torch.zeros(len(INTERSECT), dtype=torch.long, device=boxes.device).scatter_add_(0, sid, count)
    counts = counts.tolist()
    owners = torch.argsort(sid, stable=True)  # (R*K,) (row, slot) in shape order
    n = sum(counts)
    q = torch.repeat_interleave(owners, count[owners], output_size=n)
    start = torch.repeat_interleave(
        torch.cumsum(count[owners], 0) - count[owners], count[owners], output_size=n
    )
    local = torch.arange(n, device=boxes.device) - start
    ww = w[q]
    px = boxes[..., 0].flatten()[q] + local % ww
    py = boxes[..., 1].flatten()[q] + local // ww
    return (q // k_max) * n_rays + py * width + px, q, counts


def _intersect(rows: Rows, q: torch.Tensor, counts: list[int], o: torch.Tensor, d: torch.Tensor):
    """Exact hits of pair rays o, d (N, 3) with objects q (N,) (pairs grouped by shape, `counts` per
    shape): t (N,), local normal (N, 3), and the rays in object space (o_l, d_l)."""
    c, rot = rows.pos.flatten(0, 1)[q], rows.rot.flatten(0, 1)[q]
    s = rows.scale.flatten()[q][:, None]
    o_l = row_times(o - c, rot) / s  # R^T (o - c) / s
    d_l = row_times(d, rot) / s
    t, n_l = torch.empty_like(s[:, 0]), torch.empty_like(o_l)
    start = 0
    for fn, n in zip(INTERSECT, counts, strict=True):
        if n:  # contiguous slices: no gather or scatter per shape
            t[start : start + n], n_l[start : start + n] = fn(o_l[start : start + n], d_l[start : start + n])
        start += n
    return t, n_l, o_l, d_l


def _shadowed(
    rows: Rows, groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
) -> list[torch.Tensor]:
    """For groups of shadow-ray pairs (target index, object q, start point p (N, 3)), the targets whose
    ray toward the sun of q's row hits q. All groups go through one exact intersection (one sort by
    shape), which keeps the number of operations per chunk down."""
    target, q, p = (torch.cat(x) for x in zip(*groups, strict=True))
    group = torch.cat([torch.full_like(g[1], j) for j, g in enumerate(groups)])
    order, counts = _shape_order(rows, q)
    q, p, target, group = q[order], p[order], target[order], group[order]
    sun = rows.light[q // rows.scale.shape[1], 0:3]
    hit = torch.isfinite(_intersect(rows, q, counts, p, sun)[0])
    return [target[hit & (group == j)] for j in range(len(groups))]


def _shape_order(rows: Rows, q: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Permutation grouping objects q by shape (in INTERSECT order), and the count per shape."""
    sid = rows.shape.flatten()[q]
    return torch.argsort(sid, stable=True), torch.bincount(sid, minlength=len(INTERSECT)).tolist()


def _nearest(rows: Rows, n_rays: int, i: torch.Tensor, q: torch.Tensor, counts: list[int], d: torch.Tensor):
    """Nearest object of `n_rays` camera rays given candidate pairs (ray i, object q) and the pairs'
    directions d (N, 3): t (n_rays,) (inf for none), slot (n_rays,) (K for none), the winning pairs
    (one per ray that hits: ray, object, t, world normal, object-space point, direction), alone-coverage
    counts (R, K) and occlusion flags (R, K, K)."""
    (n_rows, k_max), dev = rows.scale.shape, d.device
    r, k = q // k_max, q % k_max
    t, n_l, o_l, d_l = _intersect(rows, q, counts, rows.eye[r], d)
    t_best = torch.full((n_rays,), INF, device=dev).scatter_reduce_(0, i, t, reduce="amin")
    hit = torch.isfinite(t)
    win = hit & (t == t_best[i])
    # Ties (two objects at one distance) go to the lower slot, the same on every device.
    slot = torch.full((n_rays,), k_max, dtype=torch.long, device=dev).scatter_reduce_(
        0, i[win], k[win], "amin"
    )
    coverage = torch.bincount(q[hit], minlength=n_rows * k_max).view(n_rows, k_max)
    hidden = hit & (slot[i] != k)
    occlusion = torch.zeros(n_rows, k_max, k_max, dtype=torch.bool, device=dev)
    occlusion[r[hidden], slot[i[hidden]], k[hidden]] = True
    w = (win & (slot[i] == k)).nonzero().squeeze(1)
    rot = rows.rot.flatten(0, 1)[q[w]]
    normal = torch.nn.functional.normalize(row_times(n_l[w], rot.transpose(1, 2)), dim=-1)  # R n
    local = o_l[w] + t[w, None] * d_l[w]
    return t_best, slot, (i[w], q[w], t[w], normal, local, d[w]), coverage, occlusion


def _per_row(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-row values (R, C) as (C, R, 1, ...) broadcasting against channels-first (C, R, ...) pixels
    with `ndim` pixel dimensions after R."""
    return x.T.reshape(x.shape[1], x.shape[0], *([1] * ndim))


def _t_ground(eye_y: torch.Tensor, d_y: torch.Tensor) -> torch.Tensor:
    """Ray parameter where rays with vertical direction d_y from height eye_y meet the ground (inf if
    never)."""
    return torch.where(d_y < -1e-6, eye_y / (-d_y).clamp(min=1e-6), INF)


def _shade_ground(rows: Rows, x, z, foot, dist2, lit) -> torch.Tensor:
    """Colour (3, R, ...) (channels first) of the ground points (x, z) (R, ...) of R rows, seen by pixels
    covering `foot` metres from squared distance `dist2`, in sun where `lit`: texture, sun and sky
    light, shadows, fog. Per-row light and ground kind broadcast (no per-pixel gathers)."""
    nd = x.dim() - 1
    light = _per_row(rows.light, nd)  # (15, R, 1, ...)
    albedo = shading.ground_albedo(x, z, foot, rows.ground.view(-1, *([1] * nd)))  # (3, R, ...)
    direct = light[1:2].clamp(min=0) * light[3:6]  # sun_y * sun colour
    colour = albedo.mul_(torch.addcmul(light[6:9], lit, direct))  # albedo * (ambient + lit * direct)
    fog = torch.exp(dist2 * (-1.0 / shading.FOG_DISTANCE**2)).neg_().add_(1.0)  # shading.fog's weight
    return colour.add_(fog * (light[12:15] - colour))


def _ground_shadow_pairs(rows: Rows, ray: torch.Tensor, q: torch.Tensor, p: torch.Tensor):
    """Shadow-ray pairs (ray, object q, ground point p (N, 3)) kept where the ray from p toward the
    sun passes the object's bounding sphere."""
    sun = rows.light[q // rows.scale.shape[1], 0:3]
    near = _passes_near(rows.pos.flatten(0, 1)[q], rows.bound.flatten()[q], p, sun)
    return ray[near], q[near], p[near]


def _object_points(rows: Rows, q, d, t, normal):
    """Shadow-ray start points (O, 3) of object hits (objects q, rays d at t, normals) and the
    shadow-ray pairs (hit index, object) of those facing the sun."""
    ro = q // rows.scale.shape[1]
    start = rows.eye[ro] + t[:, None] * d + SHADOW_BIAS * normal
    sun = rows.light[ro, 0:3]
    facing = (normal * sun).sum(-1) > 0
    i, q2 = _sphere_pairs(rows, ro, start, sun, valid=facing)
    return (i, q2, start[i]), facing


def _shade_objects(rows: Rows, q, d, t, normal, local, lit) -> torch.Tensor:
    """Colour (O, 3) of rays d (O, 3) that hit objects q (O,) at t: colour with a faint two-tone pattern
    (so spinning and rolling show), Lambert for matte ones, a metal that mirrors the sky and the ground
    for shiny ones, in sun where `lit`, fog."""
    ro = q // rows.scale.shape[1]
    light = rows.light[ro]
    pattern = 1.0 - 0.2 * (local[:, 0] * local[:, 2] < 0).float()
    albedo = rows.albedo.flatten(0, 1)[q] * pattern[:, None]
    view = -torch.nn.functional.normalize(d, dim=-1)
    shiny = rows.shiny.flatten()[q]
    env = torch.zeros_like(shiny)
    s = shiny.nonzero().squeeze(1)
    if len(s):
        point = rows.eye[ro[s]] + t[s, None] * d[s]
        env[s] = _reflected(rows, ro[s], light[s], point, normal[s], view[s])
    colour = shading.surface(albedo, normal, lit, light, shiny, view, env)
    return shading.fog(colour, t * d.norm(dim=-1), light[:, 12:15])


def _reflected(rows: Rows, ro, light, point, normal, view) -> torch.Tensor:
    """Brightness (S,) of what shiny surface points (S, 3) of rows `ro` (their light (S, 15)) mirror
    toward the eye: the sky (without its stars) above the horizon, the lit ground's texture (its coarse
    level: reflections are slightly blurred) below it, luminance only (shading.surface tints it by the
    object's colour)."""
    r = 2.0 * (normal * view).sum(-1, keepdim=True) * normal - view
    colour = shading.sky(r, light, rows.night[ro], stars=False)
    down = r[:, 1] < -1e-3
    if down.any():
        rd, pd, ld = r[down], point[down], light[down]
        tg = (pd[:, 1] / -rd[:, 1]).clamp(max=4 * shading.FOG_DISTANCE)
        x, z = pd[:, 0] + tg * rd[:, 0], pd[:, 2] + tg * rd[:, 2]
        albedo = shading.ground_albedo(x, z, torch.full_like(x, 0.35), rows.ground[ro[down]]).T
        ground = albedo * (ld[:, 6:9] + ld[:, 1:2].clamp(min=0) * ld[:, 3:6])
        colour[down] = shading.fog(ground, tg, ld[:, 12:15])
    luma = shading.LUMA
    return colour[:, 0] * luma[0] + colour[:, 1] * luma[1] + colour[:, 2] * luma[2]


def _lit(n: int, blocked: torch.Tensor, facing: torch.Tensor | None = None) -> torch.Tensor:
    """(n,) float: 1 in sun, 0 where `blocked` (indices) or not `facing` the sun."""
    lit = torch.ones(n, device=blocked.device) if facing is None else facing.float()
    lit[blocked] = 0.0
    return lit


@dataclass
class _Pixels:
    """The rays of whole images, separably: pixel (line v, column u) of row r looks along
    d = x[r, u] * right[r] + line[r, v] with line = y * down + forward. The camera never rolls (its right
    axis is horizontal, see camera.look_at), so d's height, and with it the ground distance, depends on
    the line only: per-line values replace per-pixel ones wherever they can."""

    x: torch.Tensor  # (R, W) (u - cx) / fx
    y: torch.Tensor  # (R, H) (v - cy) / fy
    line: torch.Tensor  # (R, H, 3)
    t_ground: torch.Tensor  # (R, H) ray parameter of the ground, inf above the horizon
    width: int

    def dirs(self, rows: Rows, ray: torch.Tensor) -> torch.Tensor:
        """Directions (N, 3) of flat ray indices (row * H * W + v * W + u)."""
        n_pix = self.x.shape[1] * self.y.shape[1]
        r, v, u = ray // n_pix, ray % n_pix // self.width, ray % self.width
        return self.x[r, u, None] * rows.cam[r, :, 0] + self.line[r, v]

    def t_at(self, ray: torch.Tensor) -> torch.Tensor:
        """Ground ray parameter (N,) of flat ray indices."""
        n_pix = self.x.shape[1] * self.y.shape[1]
        return self.t_ground[ray // n_pix, ray % n_pix // self.width]


def _pixels(rows: Rows, width: int, height: int) -> _Pixels:
    """Per-row pixel ray tables of whole images (pixel centres at integer + 0.5)."""
    dev = rows.eye.device
    fx, fy, cx, cy = (rows.intr[:, i, None] for i in range(4))
    x = (torch.arange(width, device=dev) + 0.5 - cx) / fx  # (R, W)
    y = (torch.arange(height, device=dev) + 0.5 - cy) / fy  # (R, H)
    line = y[..., None] * rows.cam[:, None, :, 1] + rows.cam[:, None, :, 2]  # (R, H, 3)
    return _Pixels(x, y, line, _t_ground(rows.eye[:, 1, None], line[..., 1]), width)


def _trace_image(rows: Rows, width: int, height: int):
    """Trace and light whole images of R rows. Object candidates come from screen boxes culled by
    bounding spheres; sky and ground are shaded densely on the bands of lines where they can appear,
    with per-line and per-column factors (no per-pixel gathers, few full-size passes); object pixels
    are shaded as a sparse set. Returns colour (3, R, H, W) (channels first), surface label (R, H, W)
    uint8 (slot, K ground, K + 1 sky), camera depth (R, H, W), coverage (R, K), occlusion (R, K, K)."""
    (n_rows, k_max), n_pix = rows.scale.shape, width * height
    px = _pixels(rows, width, height)
    i, q, _ = _box_pairs(rows, _object_boxes(rows, width, height), width, n_pix)
    d = px.dirs(rows, i)
    near = _passes_near(rows.pos.flatten(0, 1)[q], rows.bound.flatten()[q], rows.eye[q // k_max], d)
    (i, q, counts), d = _kept(rows, i, q, near), d[near]
    t_obj, slot, won, coverage, occlusion = _nearest(rows, n_rows * n_pix, i, q, counts, d)
    t_obj, slot = t_obj.view(n_rows, height, width), slot.view(n_rows, height, width)
    t_line = px.t_ground[..., None]  # (R, H, 1)
    is_obj = t_obj < t_line
    background = torch.where(torch.isfinite(t_line), k_max, k_max + 1).to(torch.uint8)
    label = torch.where(is_obj, slot.to(torch.uint8), background)
    depth = torch.where(is_obj, t_obj, t_line)
    # Shadow rays of visible object points and of ground pixels in each shadow's screen box, together.
    ray, q, t, normal, local, d = (x[is_obj.view(-1)[won[0]]] for x in won)
    obj_shadows, facing = _object_points(rows, q, d, t, normal)
    g_ray, g_q, _ = _box_pairs(rows, _shadow_boxes(rows, width, height), width, n_pix)
    on_ground = label.view(-1)[g_ray] == k_max
    g_ray, g_q = g_ray[on_ground], g_q[on_ground]
    p = rows.eye[g_q // k_max] + px.t_at(g_ray)[:, None] * px.dirs(rows, g_ray)
    p[:, 1] = SHADOW_BIAS
    blocked_obj, blocked_ground = _shadowed(rows, [obj_shadows, _ground_shadow_pairs(rows, g_ray, g_q, p)])
    colour = torch.empty(3, n_rows, height, width, device=rows.eye.device)
    sky_end, ground_start = _bands(px.t_ground)
    if ground_start < height:
        g = slice(ground_start, None)
        lit = _lit(label.numel(), blocked_ground).view(label.shape)[:, g]
        colour[:, :, g] = _ground_band(rows, px, g, lit)
    if sky_end > 0:
        s = slice(0, sky_end)
        d_sky = px.x[:, None, :, None] * rows.cam[:, None, None, :, 0] + px.line[:, s, None]  # (R, h, W, 3)
        night = rows.night[:, None, None]
        sky = shading.sky(
            torch.nn.functional.normalize(d_sky, dim=-1), rows.light[:, None, None], night, bool(night.any())
        ).movedim(-1, 0)
        colour[:, :, s] = torch.where(torch.isinf(t_line[:, s]), sky, colour[:, :, s])
    obj = _shade_objects(rows, q, d, t, normal, local, _lit(len(t), blocked_obj, facing))
    colour.view(3, -1)[:, ray] = obj.T
    return colour, label, depth, coverage, occlusion


def _bands(t_ground: torch.Tensor) -> tuple[int, int]:
    """(sky_end, ground_start) lines: the sky appears only above line sky_end and the ground only from
    line ground_start on, in any row of t_ground (R, H) (one host sync)."""
    height = t_ground.shape[1]
    seen = torch.isfinite(t_ground)
    line = torch.arange(height, device=t_ground.device)
    ends = torch.stack(
        [torch.where((~seen).any(0), line + 1, 0).max(), torch.where(seen.any(0), line, height).min()]
    )
    sky_end, ground_start = ends.tolist()
    return sky_end, ground_start


def _ground_band(rows: Rows, px: _Pixels, g: slice, lit: torch.Tensor) -> torch.Tensor:
    """Colour (3, R, h, W) of the ground on lines g of whole images, in sun where `lit` (R, h, W). With
    d = x right + line and the camera axes orthonormal, |d|^2 = x^2 + y^2 + 1, and the ground point is a
    per-line point plus x times a per-line step: each quantity is one broadcast pass."""
    t = px.t_ground[:, g]
    t = torch.where(torch.isfinite(t), t, 0.0)[..., None]  # (R, h, 1); lines of sky are discarded later
    line, right, eye = px.line[:, g], rows.cam[:, None, :, 0], rows.eye[:, None]  # (R, h, 3), (R, 1, 3)
    length2 = torch.add(px.x[:, None, :] ** 2, px.y[:, g, None] ** 2 + 1.0)  # (R, h, W)
    base, step = eye + t * line, t * right  # ground point at x = 0 and per unit x, (R, h, 3)
    x = torch.addcmul(base[..., 0:1], px.x[:, None, :], step[..., 0:1])
    z = torch.addcmul(base[..., 2:3], px.x[:, None, :], step[..., 2:3])
    foot = length2 * (t / (rows.intr[:, None, None, 0] * (-line[..., 1:2]).clamp(min=1e-4)))
    return _shade_ground(rows, x, z, foot, length2 * t * t, lit)


def _trace_rays(rows: Rows, d: torch.Tensor) -> torch.Tensor:
    """Colour (R, P, 3) of a few rays d (R, P, 3) per row (anti-aliasing samples): object candidates
    from bounding-sphere tests, everything shaded per ray."""
    n_rows, n_rays, _ = d.shape
    d_flat = d.reshape(-1, 3)
    r = torch.arange(n_rows, device=d.device).repeat_interleave(n_rays)
    i, q, counts = _by_shape(rows, *_sphere_pairs(rows, r, rows.eye[r], d_flat))
    t_obj, _, won, _, _ = _nearest(rows, n_rays * n_rows, i, q, counts, d_flat[i])
    t_ground = _t_ground(rows.eye[:, 1, None], d[..., 1])  # (R, P)
    ground = torch.isfinite(t_ground) & (t_obj.view(n_rows, n_rays) >= t_ground)
    ray, q, t, normal, local, d_w = (x[t_obj[won[0]] < t_ground.view(-1)[won[0]]] for x in won)
    obj_shadows, facing = _object_points(rows, q, d_w, t, normal)
    # Ground: shadow candidates by bounding spheres from each ground point toward the sun.
    t_g = torch.where(torch.isfinite(t_ground), t_ground, 0.0)
    p = rows.eye[:, None] + t_g[..., None] * d  # (R, P, 3)
    p[..., 1] = SHADOW_BIAS
    gi = ground.view(-1).nonzero().squeeze(1)
    j, g_q = _sphere_pairs(rows, r[gi], p.view(-1, 3)[gi], rows.light[r[gi], 0:3])
    blocked_obj, blocked_ground = _shadowed(rows, [obj_shadows, (gi[j], g_q, p.view(-1, 3)[gi[j]])])
    length2 = (d * d).sum(-1)
    foot = length2 * t_g / (rows.intr[:, None, 0] * (-d[..., 1]).clamp(min=1e-4))
    lit = _lit(n_rows * n_rays, blocked_ground).view(n_rows, n_rays)
    colour = _shade_ground(rows, p[..., 0], p[..., 2], foot, length2 * t_g * t_g, lit).movedim(0, -1)
    night = rows.night[:, None]
    sky = shading.sky(torch.nn.functional.normalize(d, dim=-1), rows.light[:, None], night, bool(night.any()))
    colour = torch.where(ground[..., None], colour, sky).contiguous()
    colour.view(-1, 3)[ray] = _shade_objects(
        rows, q, d_w, t, normal, local, _lit(len(t), blocked_obj, facing)
    )
    return colour


def _edges(label: torch.Tensor, k_max: int) -> torch.Tensor:
    """(R, H, W) bool: pixels whose surface label differs from a 4-neighbour's, except along the
    ground-sky horizon (already soft from the fog): labels K and K + 1 are the only pair summing to
    2K + 1."""

    def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a != b) & (a + b != 2 * k_max + 1)

    e = torch.zeros_like(label, dtype=torch.bool)
    dx = differs(label[:, :, 1:], label[:, :, :-1])
    dy = differs(label[:, 1:, :], label[:, :-1, :])
    e[:, :, 1:] |= dx
    e[:, :, :-1] |= dx
    e[:, 1:, :] |= dy
    e[:, :-1, :] |= dy
    return e


def render_rows(rows: Rows, width: int, height: int, antialias: bool = True):
    """Colour (R, H, W, 3) float (a channels-first buffer seen channels last), label (R, H, W) uint8,
    depth (R, H, W), coverage (R, K), occlusion (R, K, K)."""
    colour, label, depth, coverage, occlusion = _trace_image(rows, width, height)
    if antialias:
        r, y, x = _edges(label, rows.scale.shape[1]).nonzero(as_tuple=True)
        if r.numel():
            n_sub = SUBSAMPLES.shape[0]
            sub = rows.take(r)  # one row per edge pixel, its samples are that row's rays
            uv = torch.stack([x, y], dim=-1).float()[:, None] + 0.5 + SUBSAMPLES.to(x.device)  # (E, S, 2)
            c_e = _trace_rays(sub, directions(sub, uv))  # (E, S, 3)
            colour[:, r, y, x] = (colour[:, r, y, x] + c_e.sum(dim=1).T) / (n_sub + 1)
    return colour.permute(1, 2, 3, 0), label, depth, coverage, occlusion


def render(
    scenes: list[Scene] | Scene,
    size: tuple[int, int] = (128, 128),
    device: torch.device | str = "cpu",
    antialias: bool = True,
    max_rays: int | None = None,
) -> RenderOutput:
    """Render scenes (one or a batch of equal length) at size (width, height) on `device`, at most
    `max_rays` pixels at a time (default: CPU_RAYS on the CPU, GPU_RAYS elsewhere)."""
    scenes = [scenes] if isinstance(scenes, Scene) else list(scenes)
    width, height = _check_size(size)
    if not scenes:
        raise ValueError("render needs at least one scene")
    # The renderer's arithmetic is fp32 by design: a caller's autocast (a training step's bf16) must not
    # reach it (a bf16 matmul would also move colours by a level or more).
    with torch.autocast(torch.device(device).type, enabled=False):
        rows, trajs = pack(scenes, width, height, torch.device(device))
        shading.ground_atlas(device, {s.ground for s in scenes})
        n_rows, k_max = rows.eye.shape[0], rows.pos.shape[1]
        b, t_len = len(scenes), n_rows // len(scenes)
        frames = torch.empty(n_rows, height, width, 3, dtype=torch.uint8, device=device)
        ids = torch.empty(n_rows, height, width, dtype=torch.uint8, device=device)
        depth = torch.empty(n_rows, height, width, dtype=torch.float32, device=device)
        coverage = torch.empty(n_rows, k_max, dtype=torch.int32, device=device)
        occlusion = torch.empty(n_rows, k_max, k_max, dtype=torch.bool, device=device)
        max_rays = max_rays or (CPU_RAYS if torch.device(device).type == "cpu" else GPU_RAYS)
        chunks = -(-n_rows * width * height // max_rays)  # ceil; then rows split evenly among chunks
        step = max(1, -(-n_rows // chunks))
        for start in range(0, n_rows, step):
            sl = slice(start, min(start + step, n_rows))
            c, label, dep, cov, occ = render_rows(rows.take(sl), width, height, antialias)
            frames[sl] = c.clamp_(0, 1).mul_(255).add_(0.5)  # the copy truncates to uint8
            ids[sl] = torch.where(label < k_max, label + 1, 0)
            depth[sl], coverage[sl], occlusion[sl] = dep, cov, occ
    shp = (b, t_len)
    cpu = [(rows.eye.view(*shp, 3)), rows.cam.view(*shp, 3, 3)]
    k = np.stack([intrinsics(width, height, s.camera.fov) for s in scenes])
    return RenderOutput(
        frames=frames.view(*shp, height, width, 3), ids=ids.view(*shp, height, width),
        depth=depth.view(*shp, height, width), coverage=coverage.view(*shp, k_max),
        occlusion=occlusion.view(*shp, k_max, k_max), trajectories=trajs,
        eye=cpu[0].cpu().double().numpy(), world_from_camera=cpu[1].cpu().double().numpy(), k=k,
    )  # fmt: skip


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as ints, or a ValueError saying what is allowed."""
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height), got {width}x{height}")
    return width, height
