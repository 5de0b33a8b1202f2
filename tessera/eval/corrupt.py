"""Broken versions of truth clips, for checking that every metric notices what it should.

A corruption returns a new `Clip` whose per-pixel ids are corrupted the same way as its frames, so the
oracle parser (`parse_truth`) reads exactly what a perfect parser would see in the broken video.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tessera.world import Scene, render
from tessera.world.scene import COLOURS


@dataclass
class Clip:
    """A rendered prompt: the scene, frames uint8 (T, H, W, 3) and object ids uint8 (T, H, W)."""

    scene: Scene
    frames: np.ndarray
    ids: np.ndarray


def render_clip(scene: Scene, size: tuple[int, int], device: str = "cpu") -> Clip:
    """Render one scene at size (width, height)."""
    out = render(scene, size=size, device=device)
    return Clip(scene, out.frames[0].cpu().numpy(), out.ids[0].cpu().numpy())


def shuffle_frames(clip: Clip, seed: int = 0) -> Clip:
    """Frames (and ids) in a random order, the first frame moved away from the start."""
    order = np.random.default_rng(seed).permutation(len(clip.frames))
    if order[0] == 0:
        order = np.roll(order, 1)
    return Clip(clip.scene, clip.frames[order], clip.ids[order])


def noise_frames(clip: Clip, seed: int = 0) -> Clip:
    """Every frame replaced by uniform noise (nothing for a parser to find)."""
    rng = np.random.default_rng(seed)
    return Clip(clip.scene, rng.integers(0, 256, clip.frames.shape, dtype=np.uint8), np.zeros_like(clip.ids))


def freeze(clip: Clip) -> Clip:
    """The first frame repeated (a still image instead of a video)."""
    return Clip(
        clip.scene, np.repeat(clip.frames[:1], len(clip.frames), 0), np.repeat(clip.ids[:1], len(clip.ids), 0)
    )


def swap_colours(clip: Clip, size: tuple[int, int]) -> Clip:
    """Re-rendered with every object's colour replaced by the next object's (one object: the next
    colour in the palette), so each named object appears in the wrong colour."""
    obs = clip.scene.objects
    names = list(COLOURS)
    if len(obs) == 1:
        colours = [names[(names.index(obs[0].colour) + 3) % len(names)]]
    else:
        colours = [obs[(k + 1) % len(obs)].colour for k in range(len(obs))]
    new = tuple(dataclasses.replace(o, colour=c) for o, c in zip(obs, colours, strict=True))
    return render_clip(dataclasses.replace(clip.scene, objects=new), size)


def delete_object(clip: Clip, size: tuple[int, int], k: int = 0) -> Clip:
    """Object k vanishes at mid-clip: from then on its pixels show the empty stage (a render with every
    object moved far away; its shadow stays, as an inpainting model might leave it)."""
    far = tuple(
        dataclasses.replace(o, motion="static", x=200.0 + 10 * i, z=-200.0, direction="", partner=-1)
        for i, o in enumerate(clip.scene.objects)
    )
    plate = render_clip(dataclasses.replace(clip.scene, objects=far), size)
    frames, ids = clip.frames.copy(), clip.ids.copy()
    half = len(frames) // 2
    gone = ids[half:] == k + 1
    frames[half:][gone] = plate.frames[half:][gone]
    ids[half:][gone] = 0
    return Clip(clip.scene, frames, ids)


def duplicate(clip: Clip, size: tuple[int, int]) -> Clip:
    """Re-rendered with a still copy of object 0 beside the scene's objects: every named object is
    still there, with one object too many (how the shipped models most often miss)."""
    first = clip.scene.objects[0]
    copy = dataclasses.replace(
        first,
        motion="static",
        x=-first.x if abs(first.x) > 1 else first.x + 2.0,
        z=first.z + 1.0,
        direction="",
        partner=-1,
    )
    return render_clip(dataclasses.replace(clip.scene, objects=(*clip.scene.objects, copy)), size)


def static_camera(clip: Clip, size: tuple[int, int]) -> Clip:
    """Re-rendered with a still camera (wrong when the prompt names a camera move)."""
    cam = dataclasses.replace(clip.scene.camera, move="static", direction="")
    moved = render_clip(dataclasses.replace(clip.scene, camera=cam), size)
    return Clip(clip.scene, moved.frames, moved.ids)
