"""Object trajectories: position, rotation and velocity per frame for every motion, deterministic.

Each motion is closed form in time (bounces are a chain of exact parabolas, collisions are exact 1D
elastic exchanges), so a trajectory does not depend on the frame rate it is sampled at. Motion
lengths are set relative to the clip's duration so that every event happens inside the clip.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tessera.world.scene import PAIR_MOTIONS, Object, Scene

SLIDE_DISTANCE = 2.5  # metres covered by slide / roll / approach / recede over the clip
LEAVE_DISTANCE = 9.0  # sideways travel of leave_return: far enough to leave a 16:9 frame
PASS_LENGTH = 3.4  # length of the path that crosses behind the occluder


@dataclass(frozen=True)
class Event:
    """Something that happens at one moment: `kind` in bounce, land, collide, hidden, reappear, leave,
    return; `subject` and optional `other` are object indices."""

    kind: str
    frame: int
    time: float
    subject: int
    other: int = -1


@dataclass
class Trajectory:
    """Per-frame state of every object: pos (T, K, 3) centres in metres, rot (T, K, 3, 3) world-from-
    object rotations, vel (T, K, 3) m/s, and the events in time order."""

    pos: np.ndarray
    rot: np.ndarray
    vel: np.ndarray
    events: list[Event]


def simulate(scene: Scene) -> Trajectory:
    """Trajectories of all objects of `scene` at its frame times. The sampler, the captions and the
    renderer all ask for the same scene's paths, so recent results are cached (scenes are frozen and
    hashable); the arrays are read-only and the event list is a fresh copy on every call."""
    traj = _simulate_cached(scene)
    return Trajectory(pos=traj.pos, rot=traj.rot, vel=traj.vel, events=list(traj.events))


def positions(scene: Scene) -> np.ndarray:
    """Object centres (T, K, 3) of `scene` (read-only): simulate without velocities, for the sampler's
    placement test, which runs on every drawn candidate."""
    return _paths(scene)[0]


@functools.lru_cache(maxsize=512)
def _simulate_cached(scene: Scene) -> Trajectory:
    pos, rot, events = _paths(scene)
    times = np.arange(scene.frames, dtype=np.float64) / scene.fps
    vel = np.gradient(pos, times, axis=0) if scene.frames > 1 else np.zeros_like(pos)
    vel.setflags(write=False)
    return Trajectory(pos=pos, rot=rot, vel=vel, events=events)


@functools.lru_cache(maxsize=512)
def _paths(scene: Scene) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    times = np.arange(scene.frames, dtype=np.float64) / scene.fps
    n = len(scene.objects)
    pos = np.zeros((scene.frames, n, 3))
    rot = np.zeros((scene.frames, n, 3, 3))
    events: list[Event] = []
    # Single-object motions first: orbit and pass_behind follow their partner's (finished) path.
    order = sorted(range(n), key=lambda i: scene.objects[i].motion in PAIR_MOTIONS)
    for i in order:
        ob = scene.objects[i]
        if ob.motion == "collide":
            if i < ob.partner:
                _collide(scene, i, ob.partner, times, pos, rot, events)
            continue
        pos[:, i], rot[:, i], evs = _single(scene, i, times, pos)
        events += evs
    events = [e for e in events if 0.0 <= e.time <= times[-1] + 0.5 / scene.fps]
    events.sort(key=lambda e: (e.time, e.subject))
    for a in (pos, rot):
        a.setflags(write=False)
    return pos, rot, events


def _frame(scene: Scene, t: float) -> int:
    return int(min(max(round(t * scene.fps), 0), scene.frames - 1))


def _single(scene: Scene, i: int, times: np.ndarray, pos: np.ndarray):
    """(pos (T, 3), rot (T, 3, 3), events) of an object whose motion needs no joint solution."""
    ob, dur = scene.objects[i], scene.duration
    u = times / dur  # clip progress in [0, 1]
    sign = -1.0 if ob.direction == "left" else 1.0
    p = np.empty((len(times), 3))
    p[:] = (ob.x, ob.radius, ob.z)
    r = np.empty((len(times), 3, 3))
    r[:] = rot_y(ob.yaw)
    events: list[Event] = []
    if ob.motion == "slide":
        p[:, 0] += sign * SLIDE_DISTANCE * u
    elif ob.motion in ("approach", "recede"):
        p[:, 2] += (1.0 if ob.motion == "approach" else -1.0) * SLIDE_DISTANCE * u
    elif ob.motion == "roll":
        p[:, 0] += sign * SLIDE_DISTANCE * u
        r = _rolling(ob, sign * SLIDE_DISTANCE * u)
    elif ob.motion == "spin":
        r = rot_y_many(ob.yaw + 2 * math.pi * ob.turns * u)
    elif ob.motion in ("bounce", "fall"):
        e = ob.restitution if ob.motion == "bounce" else 0.0
        height, impacts = bounce_heights(times, ob.height, fall_time(ob.motion, dur), e)
        p[:, 1] += height
        kind = "bounce" if ob.motion == "bounce" else "land"
        events = [Event(kind, _frame(scene, t), t, i) for t in impacts[: 1 if e == 0 else None]]
    elif ob.motion == "orbit":
        p = _orbit(scene, i, u, pos)
    elif ob.motion == "pass_behind":
        p, events = _pass_behind(scene, i, u, pos)
    elif ob.motion == "leave_return":
        p[:, 0] += sign * LEAVE_DISTANCE * _out_and_back(u)
        events = [Event("leave", _frame(scene, 0.3 * dur), 0.3 * dur, i)]
        events.append(Event("return", _frame(scene, 0.7 * dur), 0.7 * dur, i))
    return p, r, events


def fall_time(motion: str, duration: float) -> float:
    """Seconds until the first impact: early in the clip so several bounces fit (capped for long clips)."""
    return min((0.3 if motion == "bounce" else 0.4) * duration, 0.6)


def bounce_heights(
    times: np.ndarray, h0: float, t1: float, restitution: float
) -> tuple[np.ndarray, list[float]]:
    """Height of the bottom above the ground at `times` for an object dropped from rest at height `h0`
    that first hits the ground at time `t1` (this fixes gravity g = 2 h0 / t1^2) and keeps a fraction
    `restitution` of its speed at each impact. Returns (heights, impact times); between impacts the
    height is an exact parabola."""
    g = 2.0 * h0 / t1**2
    height = np.where(times < t1, h0 - 0.5 * g * times**2, 0.0)
    impacts, t_hit, v = [t1], t1, restitution * g * t1
    while v > 1e-3 and t_hit <= times[-1]:
        flight = 2.0 * v / g
        s = times - t_hit
        inside = (s >= 0) & (s < flight)
        height = np.where(inside, v * s - 0.5 * g * s**2, height)
        t_hit, v = t_hit + flight, v * restitution
        if flight < 1e-3:
            break
        impacts.append(t_hit)
    return np.maximum(height, 0.0), impacts


def _rolling(ob: Object, dist: np.ndarray) -> np.ndarray:
    """Rotations of an object rolling without slipping a signed distance along x: angle = dist / r
    about the -z axis. A cylinder lies on its side first (its axis along z)."""
    base = rot_y(ob.yaw) if ob.shape == "sphere" else rot_x(math.pi / 2)
    return rot_z_many(-dist / ob.radius) @ base


def _orbit(scene: Scene, i: int, u: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Circle around the partner's (moving) centre, starting from the object's own start point."""
    ob = scene.objects[i]
    other = scene.objects[ob.partner]
    dx, dz = ob.x - other.x, ob.z - other.z
    radius, phase = math.hypot(dx, dz), math.atan2(dz, dx)
    angle = phase + 2 * math.pi * ob.turns * u
    centre = pos[:, ob.partner]
    return np.stack([centre[:, 0] + radius * np.cos(angle), np.full_like(u, ob.radius),
                     centre[:, 2] + radius * np.sin(angle)], axis=1)  # fmt: skip


def _pass_behind(scene: Scene, i: int, u: np.ndarray, pos: np.ndarray):
    """Cross from one side of the occluder to the other, behind it as seen from the camera (-z)."""
    ob = scene.objects[i]
    occ = scene.objects[ob.partner]
    sign = -1.0 if ob.direction == "left" else 1.0
    x = occ.x - sign * PASS_LENGTH / 2 + sign * PASS_LENGTH * u
    z = np.full_like(u, occ.z - occ.radius - ob.radius - 0.5)
    p = np.stack([x, np.full_like(u, ob.radius), z], axis=1)
    dur = scene.duration
    events = [Event("hidden", _frame(scene, 0.4 * dur), 0.4 * dur, i, ob.partner)]
    events.append(Event("reappear", _frame(scene, 0.75 * dur), 0.75 * dur, i, ob.partner))
    return p, events


def _out_and_back(u: np.ndarray) -> np.ndarray:
    """0 -> 1 over the first 40% of the clip (eased), 1 until 60%, then back to 0."""
    s = np.clip(np.minimum(u / 0.4, (1.0 - u) / 0.4), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _collide(scene: Scene, i: int, j: int, times, pos, rot, events) -> None:
    """Two objects head toward each other along the line joining them and meet at 45% of the clip;
    then an exact 1D elastic collision with masses proportional to volume (size^3)."""
    a, b = scene.objects[i], scene.objects[j]
    start_a, start_b = np.array([a.x, a.radius, a.z]), np.array([b.x, b.radius, b.z])
    axis = start_b - start_a
    axis[1] = 0.0
    dist = float(np.linalg.norm(axis))
    axis /= dist
    t_c = 0.45 * scene.duration
    closing = (dist - a.radius - b.radius) / t_c
    va, vb = 0.6 * closing, -0.4 * closing  # along `axis`
    ma, mb = a.radius**3, b.radius**3
    va2 = ((ma - mb) * va + 2 * mb * vb) / (ma + mb)
    vb2 = ((mb - ma) * vb + 2 * ma * va) / (ma + mb)
    before = times < t_c
    sa = np.where(before, va * times, va * t_c + va2 * (times - t_c))
    sb = np.where(before, vb * times, vb * t_c + vb2 * (times - t_c))
    pos[:, i] = start_a + sa[:, None] * axis
    pos[:, j] = start_b + sb[:, None] * axis
    rot[:, i], rot[:, j] = rot_y(a.yaw), rot_y(b.yaw)
    events.append(Event("collide", _frame(scene, t_c), t_c, i, j))


def rot_x(a: float) -> np.ndarray:
    """Rotation by `a` radians about the x axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    """Rotation by `a` radians about the vertical y axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    """Rotation by `a` radians about the z axis."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rot_y_many(a: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) by angles `a` (T,) about the vertical y axis (rot_y for a whole path)."""
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((len(a), 3, 3))
    out[:, 0, 0], out[:, 0, 2], out[:, 1, 1], out[:, 2, 0], out[:, 2, 2] = c, s, 1.0, -s, c
    return out


def rot_z_many(a: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) by angles `a` (T,) about the z axis (rot_z for a whole path)."""
    c, s = np.cos(a), np.sin(a)
    out = np.zeros((len(a), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = c, -s, s, c, 1.0
    return out
