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
    """world_from_camera rotation (3, 3) whose columns are the camera's right, down and forward axes."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def camera_poses(cam: CameraPath, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(eye (T, 3), world_from_camera rotation (T, 3, 3)) along the eased path of `cam`."""
    u = ease(np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1))
    sign = 1.0 if cam.direction in ("right", "up", "in") else -1.0
    eye0 = np.array([0.0, cam.height, cam.distance])
    eyes, rots = [], []
    for s in u:
        eye, target = eye0.copy(), TARGET.copy()
        if cam.move == "orbit":  # around the vertical axis through the target; "right" = camera moves right
            a = math.radians(ORBIT_DEGREES) * s * sign
            eye = np.array([cam.distance * math.sin(a), cam.height, cam.distance * math.cos(a)])
        elif cam.move == "dolly":
            eye = eye0 + sign * DOLLY_FRACTION * s * (TARGET - eye0)
        elif cam.move == "truck":
            shift = np.array([sign * TRUCK_METRES * s, 0.0, 0.0])
            eye, target = eye0 + shift, TARGET + shift
        elif cam.move == "pan":  # turn the view about the vertical axis through the eye
            a = math.radians(PAN_DEGREES) * s * sign
            d = TARGET - eye0
            target = eye0 + np.array([d[0] * math.cos(a) + d[2] * -math.sin(a), d[1],
                                      d[0] * math.sin(a) + d[2] * math.cos(a)])  # fmt: skip
        elif cam.move == "tilt":
            d = TARGET - eye0
            pitch = math.atan2(d[1], math.hypot(d[0], d[2])) + sign * math.radians(TILT_DEGREES) * s
            target = eye0 + np.array([0.0, math.tan(pitch) * math.hypot(d[0], d[2]), d[2]])
        eyes.append(eye)
        rots.append(look_at(eye, target))
    return np.stack(eyes), np.stack(rots)


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
