"""Batched ray caster in PyTorch: the same code renders on the CPU and on CUDA.

Work is organised in *rows*: one row is one frame of one scene (B scenes x T frames = B*T rows) with
its own camera, object poses and light. Rays are `(R, P, 3)`: P rays per row. Per object, a bounding
sphere test over all rays picks candidate (ray, object) pairs; only those are intersected exactly
(analytic shapes in object space, see shapes.py), so the cost follows the pixels objects cover, not
pixels x objects. Shadows are one ray per visible point toward the sun; anti-aliasing re-renders only
pixels on an object's silhouette with 2x2 sub-samples (edge-adaptive supersampling), and distant
ground texture fades to its mean, so the horizon does not shimmer. Rows are processed in chunks of at
most `max_rays` rays, which bounds memory for 2048x2048 stills and large batches alike.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from tessera.world import shading
from tessera.world.camera import camera_poses, intrinsics
from tessera.world.physics import Trajectory, simulate
from tessera.world.scene import COLOURS, SHAPES, Scene
from tessera.world.shapes import INTERSECT

BOUND = 3**0.5  # every unit shape fits in a sphere of radius sqrt(3) around its centre
SHADOW_BIAS = 2e-3
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
    albedo, shiny = np.zeros((b, k_max, 3)), np.zeros((b, k_max))
    eye, cam, intr = np.zeros((b, t_len, 3)), np.zeros((b, t_len, 3, 3)), np.zeros((b, 4))
    for i, (scene, traj) in enumerate(zip(scenes, trajs, strict=True)):
        n = len(scene.objects)
        pos[i, :, :n], rot[i, :, :n] = traj.pos, traj.rot
        for j, ob in enumerate(scene.objects):
            scale[i, j], shape[i, j], active[i, j] = ob.radius, SHAPES.index(ob.shape), True
            albedo[i, j], shiny[i, j] = COLOURS[ob.colour], float(ob.material == "shiny")
        eye[i], cam[i] = camera_poses(scene.camera, t_len)
        k = intrinsics(width, height, scene.camera.fov)
        intr[i] = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])

    def per_row(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:  # (B, ...) -> (B*T, ...)
        t = torch.as_tensor(x, dtype=dtype, device=device)
        return t[:, None].expand(b, t_len, *t.shape[1:]).reshape(b * t_len, *t.shape[1:])

    def flat(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:  # (B, T, ...) -> (B*T, ...)
        return torch.as_tensor(x, dtype=dtype, device=device).reshape(b * t_len, *x.shape[2:])

    light = np.stack([shading.light_tensors(s.time_of_day).numpy() for s in scenes])
    rows = Rows(
        eye=flat(eye), cam=flat(cam), intr=per_row(intr), pos=flat(pos), rot=flat(rot),
        scale=per_row(scale), shape=per_row(shape, torch.long), active=per_row(active, torch.bool),
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


def _sphere_pairs(rows: Rows, row: torch.Tensor, o: torch.Tensor, d: torch.Tensor):
    """(ray, slot) index pairs where rays o + t d (N, 3) of rows `row` (N,) pass within the bounding
    sphere of an object, ahead of the origin. Dense over N x K: used for small ray sets."""
    dn = torch.nn.functional.normalize(d, dim=-1)
    oc = rows.pos[row] - o[:, None]  # (N, K, 3)
    tca = (oc * dn[:, None]).sum(-1)
    rb = rows.scale[row] * BOUND
    cand = ((oc * oc).sum(-1) - tca * tca <= rb * rb) & (tca > -rb) & rows.active[row]
    return cand.nonzero(as_tuple=True)


def _to_camera(rows: Rows, points: torch.Tensor) -> torch.Tensor:
    """Camera coordinates (R, ..., 3) of world points (R, ..., 3)."""
    shape = points.shape
    q = (points.reshape(shape[0], -1, 3) - rows.eye[:, None]) @ rows.cam  # R^T (p - eye)
    return q.reshape(shape)


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
    rb = rows.scale * BOUND
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
    rb = (rows.scale * BOUND)[..., None]
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


def _box_pairs(boxes: torch.Tensor, keep: torch.Tensor, width: int, n_rays: int):
    """(flat ray index, slot) pairs for every pixel inside each row's object boxes (R, K, 4)."""
    n_rows, k_max = keep.shape
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=0).flatten()
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=0).flatten()
    count = w * h * keep.flatten()
    owner = torch.repeat_interleave(torch.arange(n_rows * k_max, device=boxes.device), count)
    local = torch.arange(owner.numel(), device=boxes.device) - (torch.cumsum(count, 0) - count)[owner]
    ww = w[owner]
    px = boxes[..., 0].flatten()[owner] + local % ww
    py = boxes[..., 1].flatten()[owner] + local // ww
    return (owner // k_max) * n_rays + py * width + px, owner % k_max


def _intersect(rows: Rows, r, k, o: torch.Tensor, d: torch.Tensor, normals: bool = True):
    """Exact hits of pair rays o, d (N, 3) with object k of row r: t (N,), world normal, local point."""
    c, rot, s = rows.pos[r, k], rows.rot[r, k], rows.scale[r, k][:, None]
    o_l = torch.einsum("ni,nij->nj", o - c, rot) / s  # R^T (o - c) / s
    d_l = torch.einsum("ni,nij->nj", d, rot) / s
    t, n_l = torch.full_like(s[:, 0], float("inf")), torch.zeros_like(o_l)
    shape = rows.shape[r, k]
    for sid, fn in enumerate(INTERSECT):
        sel = (shape == sid).nonzero().squeeze(1)
        if sel.numel():
            t[sel], n_l[sel] = fn(o_l[sel], d_l[sel])
    if not normals:
        return t, None, None
    n_w = torch.nn.functional.normalize(torch.einsum("nij,nj->ni", rot, n_l), dim=-1)
    return t, n_w, o_l + t.nan_to_num(0, 0, 0)[:, None] * d_l


def _nearest(rows: Rows, row, eye, d, pairs):
    """Nearest object per ray (N rays, candidate (ray, slot) pairs): t, slot (-1 none), normal, local
    hit point; plus alone-coverage counts (R, K) and occlusion flags (R, K, K) at these rays."""
    n, (n_rows, k_max), dev = d.shape[0], rows.scale.shape, d.device
    i, k = pairs
    r = row[i]
    t, n_w, p_l = _intersect(rows, r, k, eye[i], d[i])
    t_best = torch.full((n,), float("inf"), device=dev).scatter_reduce_(0, i, t, reduce="amin")
    win = (t == t_best[i]) & torch.isfinite(t)
    slot = torch.full((n,), -1, dtype=torch.long, device=dev)
    slot[i[win]] = k[win]
    normal, local = torch.zeros(n, 3, device=dev), torch.zeros(n, 3, device=dev)
    normal[i[win]], local[i[win]] = n_w[win], p_l[win]
    hit = torch.isfinite(t)
    coverage = torch.bincount(r[hit] * k_max + k[hit], minlength=n_rows * k_max).view(n_rows, k_max)
    hidden = hit & (slot[i] != k)
    occlusion = torch.zeros(n_rows, k_max, k_max, dtype=torch.bool, device=dev)
    occlusion[r[hidden], slot[i[hidden]], k[hidden]] = True
    return t_best, slot, normal, local, coverage, occlusion


def _blocked(rows: Rows, row, p, pairs) -> torch.Tensor:
    """(N,) bool: the ray from points p (N, 3) toward the sun hits an object (candidate pairs given)."""
    i, k = pairs
    sun = rows.light[row[i], 0:3]
    t, _, _ = _intersect(rows, row[i], k, p[i], sun, normals=False)
    out = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
    out[i[torch.isfinite(t)]] = True
    return out


def shade(rows: Rows, row: torch.Tensor, d: torch.Tensor, grid: tuple[int, int, int] | None = None):
    """Trace and light N rays: `row` (N,) their row, `d` (N, 3) directions from `directions`. With
    `grid` = (width, height, pixels per row) the rays are whole images (ray = row * P + pixel) and
    candidates come from screen boxes; otherwise from bounding-sphere tests. Returns colour (N, 3),
    surface label (N,) (slot, K ground, K + 1 sky), camera depth (N,), coverage (R, K), occlusion."""
    k_max = rows.scale.shape[1]
    eye = rows.eye[row]
    if grid is not None:
        pairs = _box_pairs(_object_boxes(rows, grid[0], grid[1]), rows.active, grid[0], grid[2])
    else:
        pairs = _sphere_pairs(rows, row, eye, d)
    t_obj, slot, normal, local, coverage, occlusion = _nearest(rows, row, eye, d, pairs)
    t_ground = torch.where(d[:, 1] < -1e-6, eye[:, 1] / (-d[:, 1]).clamp(min=1e-6), float("inf"))
    is_obj = t_obj < t_ground
    is_ground = ~is_obj & torch.isfinite(t_ground)
    colour = torch.empty_like(d)
    ground = is_ground.nonzero().squeeze(1)
    colour[ground] = _shade_ground(rows, row, eye, d, t_ground, ground, grid)
    obj = is_obj.nonzero().squeeze(1)
    colour[obj] = _shade_objects(
        rows, row[obj], eye[obj], d[obj], t_obj[obj], slot[obj], normal[obj], local[obj]
    )
    sky = (~is_obj & ~is_ground).nonzero().squeeze(1)
    colour[sky] = shading.sky(
        torch.nn.functional.normalize(d[sky], dim=-1), rows.light[row[sky]], rows.night[row[sky]]
    )
    label = torch.where(is_obj, slot, torch.where(is_ground, k_max, k_max + 1))
    return colour, label, torch.minimum(t_obj, t_ground), coverage, occlusion


def _shade_ground(rows: Rows, row, eye, d, t_ground, ground, grid) -> torch.Tensor:
    """Colour (G, 3) of the ground rays `ground`: texture, sun and sky light, shadows, fog."""
    rg, dg = row[ground], d[ground]
    p = eye[ground] + t_ground[ground, None] * dg
    length = dg.norm(dim=-1)
    dist = t_ground[ground] * length
    foot = dist * length / (rows.intr[rg, 0] * (-dg[:, 1]).clamp(min=1e-4))
    albedo = torch.empty_like(p)
    kinds = rows.ground[rg]
    for name, gid in shading.GROUND_IDS.items():
        sel = (kinds == gid).nonzero().squeeze(1)
        if sel.numel():
            albedo[sel] = shading.ground_albedo(p[sel, 0], p[sel, 2], foot[sel], name)
    p[:, 1] = SHADOW_BIAS
    if grid is not None:  # pixels in the screen box of each shadow, kept where the pixel sees ground
        ray, k = _box_pairs(_shadow_boxes(rows, grid[0], grid[1]), rows.active, grid[0], grid[2])
        where = torch.full((d.shape[0],), -1, dtype=torch.long, device=d.device)
        where[ground] = torch.arange(ground.numel(), device=d.device)
        j = where[ray]
        pairs = (j[j >= 0], k[j >= 0])
    else:
        pairs = _sphere_pairs(rows, rg, p, rows.light[rg, 0:3])
    lit = (~_blocked(rows, rg, p, pairs)).float()[:, None]
    light = rows.light[rg]
    sun_y = light[:, 1:2].clamp(min=0)
    colour = albedo * (light[:, 6:9] + lit * sun_y * light[:, 3:6])
    return shading.fog(colour, dist, light[:, 12:15])


def _shade_objects(rows: Rows, ro, eye, d, t, slot, normal, local) -> torch.Tensor:
    """Colour (O, 3) of rays that hit objects: colour with a faint two-tone pattern (so spinning and
    rolling show), Lambert + Blinn-Phong for shiny ones, shadows from other objects, fog."""
    p = eye + t[:, None] * d
    light = rows.light[ro]
    pattern = 1.0 - 0.2 * (local[:, 0] * local[:, 2] < 0).float()
    albedo = rows.albedo[ro, slot] * pattern[:, None]
    facing = (normal * light[:, 0:3]).sum(-1) > 0
    start = p + SHADOW_BIAS * normal
    i, k = _sphere_pairs(rows, ro, start, light[:, 0:3])
    keep = facing[i]
    lit = (~_blocked(rows, ro, start, (i[keep], k[keep]))).float() * facing
    view = -torch.nn.functional.normalize(d, dim=-1)
    colour = shading.surface(albedo, normal, lit, light, rows.shiny[ro, slot], view)
    return shading.fog(colour, t * d.norm(dim=-1), light[:, 12:15])


def _edges(label: torch.Tensor, k_max: int) -> torch.Tensor:
    """(R, H, W) bool: pixels whose surface label differs from a 4-neighbour's, except along the
    ground-sky horizon (already soft from the fog)."""

    def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        horizon = (torch.minimum(a, b) == k_max) & (torch.maximum(a, b) == k_max + 1)
        return (a != b) & ~horizon

    e = torch.zeros_like(label, dtype=torch.bool)
    dx = differs(label[:, :, 1:], label[:, :, :-1])
    dy = differs(label[:, 1:, :], label[:, :-1, :])
    e[:, :, 1:] |= dx
    e[:, :, :-1] |= dx
    e[:, 1:, :] |= dy
    e[:, :-1, :] |= dy
    return e


def render_rows(rows: Rows, width: int, height: int, antialias: bool = True):
    """Colour (R, H, W, 3) float, label, depth (R, H, W), coverage (R, K), occlusion (R, K, K)."""
    device, n_rows, n_pix = rows.eye.device, rows.eye.shape[0], width * height
    v, u = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    uv = torch.stack([u, v], dim=-1).reshape(1, -1, 2).float() + 0.5
    d = directions(rows, uv).reshape(-1, 3)
    row = torch.arange(n_rows, device=device).repeat_interleave(n_pix)
    colour, label, depth, coverage, occlusion = shade(rows, row, d, (width, height, n_pix))
    colour = colour.view(n_rows, height, width, 3)
    label, depth = label.view(n_rows, height, width), depth.view(n_rows, height, width)
    if antialias:
        r, y, x = _edges(label, rows.scale.shape[1]).nonzero(as_tuple=True)
        if r.numel():
            n_sub = SUBSAMPLES.shape[0]
            uv_e = torch.stack([x, y], dim=-1).float()[:, None] + 0.5 + SUBSAMPLES.to(device)  # (E, S, 2)
            d_e = directions(rows.take(r), uv_e).reshape(-1, 3)
            c_e = shade(rows, r.repeat_interleave(n_sub), d_e)[0].view(-1, n_sub, 3)
            colour[r, y, x] = (colour[r, y, x] + c_e.sum(dim=1)) / (n_sub + 1)
    return colour, label, depth, coverage, occlusion


def render(
    scenes: list[Scene] | Scene,
    size: tuple[int, int] = (128, 128),
    device: torch.device | str = "cpu",
    antialias: bool = True,
    max_rays: int = 1 << 20,
) -> RenderOutput:
    """Render scenes (one or a batch of equal length) at size (width, height) on `device`."""
    scenes = [scenes] if isinstance(scenes, Scene) else list(scenes)
    width, height = _check_size(size)
    if not scenes:
        raise ValueError("render needs at least one scene")
    rows, trajs = pack(scenes, width, height, torch.device(device))
    n_rows, k_max = rows.eye.shape[0], rows.pos.shape[1]
    b, t_len = len(scenes), n_rows // len(scenes)
    frames = torch.empty(n_rows, height, width, 3, dtype=torch.uint8, device=device)
    ids = torch.empty(n_rows, height, width, dtype=torch.uint8, device=device)
    depth = torch.empty(n_rows, height, width, dtype=torch.float32, device=device)
    coverage = torch.empty(n_rows, k_max, dtype=torch.int32, device=device)
    occlusion = torch.empty(n_rows, k_max, k_max, dtype=torch.bool, device=device)
    step = max(1, max_rays // (width * height))
    for start in range(0, n_rows, step):
        sl = slice(start, min(start + step, n_rows))
        c, label, dep, cov, occ = render_rows(rows.take(sl), width, height, antialias)
        frames[sl] = (c.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        ids[sl] = torch.where(label < k_max, label + 1, 0).to(torch.uint8)
        depth[sl], coverage[sl], occlusion[sl] = (
            torch.where(label <= k_max, dep, float("inf")),
            cov.int(),
            occ,
        )
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
