"""Analytic ray intersection with the unit shapes, in object coordinates.

Every function takes ray origins `o` and directions `d` of shape (P, 3) in the object's own frame (the
shape fills [-1, 1]^3, y up; directions need not be unit length, so `t` is the same parameter as in
the world) and returns `(t (P,), normal (P, 3))` for the first hit in front of the origin, with
`t = inf` where the ray misses. Rays start outside the shape (cameras and shadow-ray origins always do).
"""

from __future__ import annotations

import math

import torch

EPS = 1e-4
INF = float("inf")


def _planes(
    normals: list[tuple[float, float, float]], offsets: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    n = torch.tensor(normals, dtype=torch.float64)
    norm = n.norm(dim=1)
    return (n / norm[:, None]).float(), (torch.tensor(offsets, dtype=torch.float64) / norm).float()


# Convex polyhedra as half-spaces n . x <= c (F planes each).
_CUBE = _planes([(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)], [1.0] * 6)
# Square base [-1, 1]^2 at y = -1, apex (0, 1, 0): side planes 2|x| + y <= 1.
_PYRAMID = _planes([(0, -1, 0), (2, 1, 0), (-2, 1, 0), (0, 1, 2), (0, 1, -2)], [1.0] * 5)
# |x| + |y| + |z| <= 1.
_OCTAHEDRON = _planes([(sx, sy, sz) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], [1.0] * 8)


def _dots(v: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """v (P, 3) dotted with each normal n (F, 3): (P, F), in elementwise ops (not a matrix product,
    whose rounding may follow the thread count or memory alignment)."""
    return v[:, 0:1] * n[:, 0] + v[:, 1:2] * n[:, 1] + v[:, 2:3] * n[:, 2]


def convex(o: torch.Tensor, d: torch.Tensor, planes: tuple[torch.Tensor, torch.Tensor]):
    """Ray against an intersection of half-spaces: enter at the latest entering plane, leave at the
    earliest exiting one; a hit when entry <= exit and the entry is in front of the origin."""
    n, c = planes[0].to(o.device), planes[1].to(o.device)
    num = c - _dots(o, n)  # (P, F) distance to each plane along its normal (>= 0: inside)
    den = _dots(d, n)  # (P, F) < 0: the ray enters through this plane
    t_plane = num / torch.where(den.abs() < 1e-12, torch.full_like(den, 1e-12), den)
    entering, exiting = den < 0, den > 0
    t_in, face = torch.where(entering, t_plane, torch.full_like(t_plane, -INF)).max(dim=1)
    t_out = torch.where(exiting, t_plane, torch.full_like(t_plane, INF)).min(dim=1).values
    parallel_outside = ((den.abs() < 1e-12) & (num < 0)).any(dim=1)
    hit = (t_in <= t_out) & (t_in > EPS) & ~parallel_outside
    return torch.where(hit, t_in, torch.full_like(t_in, INF)), n[face]


def cube(o: torch.Tensor, d: torch.Tensor):
    """Axis-aligned cube [-1, 1]^3."""
    return convex(o, d, _CUBE)


def pyramid(o: torch.Tensor, d: torch.Tensor):
    """Square pyramid on the y = -1 base with its apex at y = 1."""
    return convex(o, d, _PYRAMID)


def octahedron(o: torch.Tensor, d: torch.Tensor):
    """Regular octahedron with vertices at +-1 on each axis."""
    return convex(o, d, _OCTAHEDRON)


def sphere(o: torch.Tensor, d: torch.Tensor):
    """Unit sphere."""
    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - 1.0
    disc = b * b - a * c
    t = (-b - disc.clamp_min(0).sqrt()) / a
    hit = (disc >= 0) & (t > EPS)
    t = torch.where(hit, t, torch.full_like(t, INF))
    return t, o + t.nan_to_num(0, 0, 0)[:, None] * d


def _closer(t: torch.Tensor, n: torch.Tensor, t2: torch.Tensor, n2: torch.Tensor):
    """Keep whichever of two candidate hits is nearer."""
    take = t2 < t
    return torch.where(take, t2, t), torch.where(take[:, None], n2, n)


def _cap(o: torch.Tensor, d: torch.Tensor, y: float, radius: float):
    """Hit of the disc of `radius` in the plane at height `y`, normal pointing away from the body."""
    dy = torch.where(d[:, 1].abs() < 1e-12, torch.full_like(d[:, 1], 1e-12), d[:, 1])
    t = (y - o[:, 1]) / dy
    p = o + t[:, None] * d
    ok = (t > EPS) & (p[:, 0] ** 2 + p[:, 2] ** 2 <= radius * radius)
    n = torch.zeros_like(o)
    n[:, 1] = math.copysign(1.0, y)
    return torch.where(ok, t, torch.full_like(t, INF)), n


def _lateral(o, d, a, b, c, normal_fn):
    """Nearest root of a t^2 + 2 b t + c = 0 whose point lies within -1 <= y <= 1."""
    disc = b * b - a * c
    sq = disc.clamp_min(0).sqrt()
    a = torch.where(a.abs() < 1e-12, torch.full_like(a, 1e-12), a)
    t_best = torch.full_like(a, INF)
    for root in ((-b - sq) / a, (-b + sq) / a):
        y = o[:, 1] + root * d[:, 1]
        ok = (disc >= 0) & (root > EPS) & (y.abs() <= 1.0)
        t_best = torch.where(ok & (root < t_best), root, t_best)
    p = o + t_best.nan_to_num(0, 0, 0)[:, None] * d
    return t_best, normal_fn(p)


def cylinder(o: torch.Tensor, d: torch.Tensor):
    """Cylinder of radius 1 around the y axis, -1 <= y <= 1, with both caps."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - 1.0
    t, n = _lateral(o, d, a, b, c, lambda p: p * torch.tensor([1.0, 0.0, 1.0], device=p.device))
    t, n = _closer(t, n, *_cap(o, d, 1.0, 1.0))
    return _closer(t, n, *_cap(o, d, -1.0, 1.0))


def cone(o: torch.Tensor, d: torch.Tensor):
    """Cone with a base of radius 1 at y = -1 and its apex at y = 1: x^2 + z^2 = (k (1 - y))^2, k = 1/2."""
    k2 = 0.25
    q = 1.0 - o[:, 1]  # distance below the apex along y
    a = d[:, 0] ** 2 + d[:, 2] ** 2 - k2 * d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2] + k2 * q * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - k2 * q * q

    def normal(p: torch.Tensor) -> torch.Tensor:
        return torch.stack([p[:, 0], k2 * (1.0 - p[:, 1]), p[:, 2]], dim=1)

    t, n = _lateral(o, d, a, b, c, normal)
    return _closer(t, n, *_cap(o, d, -1.0, 1.0))


# Index in this tuple = shape id used by the renderer (same order as scene.SHAPES).
INTERSECT = (cube, sphere, cylinder, cone, pyramid, octahedron)
# Radius of the smallest sphere around the origin holding each unit shape (same order): the cube's and
# pyramid's corners, the cylinder's and cone's base rim, the sphere's and octahedron's surface.
BOUND_RADII = (3**0.5, 1.0, 2**0.5, 2**0.5, 3**0.5, 1.0)
