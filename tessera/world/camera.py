"""Camera paths and intrinsics.

Poses follow the OpenCV convention: camera x right, y down, z forward; `world_from_camera` maps
camera coordinates to world coordinates. Every move is eased (smoothstep in time), so speed is zero
at the first and last frame and the path has no kinks.
"""

from __future__ import annotations

import math

import numpy as np

from tessera.world.scene import CameraPath

TARGET = np.array([0.0, 0.4, 0.0])  # the point the camera looks at when it starts
PAN_DEGREES = 25.0
TILT_DEGREES = 12.0
ORBIT_DEGREES = 50.0
DOLLY_FRACTION = 0.35  # dolly in moves this fraction of the distance toward the target
TRUCK_METRES = 2.5


def ease(u: np.ndarray) -> np.ndarray:
    """Smoothstep 3u^2 - 2u^3: zero velocity at both ends."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """world_from_camera rotation (..., 3, 3) whose columns are the camera's right, down and forward
    axes, for eyes and targets (..., 3) (one pose or a whole path at once)."""
    forward = (target - eye) / np.linalg.norm(target - eye, axis=-1, keepdims=True)
    right = _cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = _cross(forward, right)
    return np.stack([right, down, forward], axis=-1)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (np.cross's arithmetic without its per-call overhead)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def camera_poses(cam: CameraPath, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(eye (T, 3), world_from_camera rotation (T, 3, 3)) along the eased path of `cam`, computed for
    all frames at once (this runs once per clip, so it stays cheap next to a GPU renderer)."""
    s = ease(np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1))  # (T,) eased progress
    sign = 1.0 if cam.direction in ("right", "up", "in") else -1.0
    eye0 = np.array([0.0, cam.height, cam.distance])
    eye, target = np.tile(eye0, (len(s), 1)), np.tile(TARGET, (len(s), 1))  # (T, 3) each
    d = TARGET - eye0
    if cam.move == "orbit":  # around the vertical axis through the target; "right" = camera moves right
        a = math.radians(ORBIT_DEGREES) * s * sign
        eye = np.stack([cam.distance * np.sin(a), np.full_like(a, cam.height), cam.distance * np.cos(a)], 1)
    elif cam.move == "dolly":
        eye = eye0 + sign * DOLLY_FRACTION * s[:, None] * d
    elif cam.move == "truck":
        shift = np.stack([sign * TRUCK_METRES * s, np.zeros_like(s), np.zeros_like(s)], 1)
        eye, target = eye0 + shift, TARGET + shift
    elif cam.move == "pan":  # turn the view about the vertical axis through the eye
        a = math.radians(PAN_DEGREES) * s * sign
        turned = [
            d[0] * np.cos(a) + d[2] * -np.sin(a),
            np.full_like(a, d[1]),
            d[0] * np.sin(a) + d[2] * np.cos(a),
        ]
        target = eye0 + np.stack(turned, 1)
    elif cam.move == "tilt":
        flat = math.hypot(d[0], d[2])
        pitch = math.atan2(d[1], flat) + sign * math.radians(TILT_DEGREES) * s
        target = eye0 + np.stack([np.zeros_like(s), np.tan(pitch) * flat, np.full_like(s, d[2])], 1)
    return eye, look_at(eye, target)


def intrinsics(width: int, height: int, fov: float) -> np.ndarray:
    """Pinhole K (3, 3) for a vertical field of view `fov` in degrees; pixel centres at integer + 0.5."""
    f = 0.5 * height / math.tan(math.radians(fov) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def project(points: np.ndarray, eye: np.ndarray, world_from_camera: np.ndarray, k: np.ndarray):
    """Pixel coordinates (..., 2) and camera depth (...) of world points (..., 3) for one camera."""
    cam = (points - eye) @ world_from_camera  # R^T (p - eye), row vectors
    z = cam[..., 2]
    uv = (cam[..., :2] / z[..., None]) * np.diag(k)[:2] + k[:2, 2]
    return uv, z
