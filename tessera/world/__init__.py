"""The world engine: synthetic 3D clips with exact captions and ground truth, rendered in PyTorch.

scene = WorldSampler(WorldConfig(), "train").sample(seed)   # a Scene (scene.py)
out = render([scene], size=(128, 128), device="cuda")       # frames + per-pixel truth
detailed, short = captions(scene)
"""

from __future__ import annotations

from tessera.world.captions import captions, detailed_caption, short_caption
from tessera.world.commands import render_command, show_command
from tessera.world.dataset import WorldDataset
from tessera.world.render import RenderOutput, render
from tessera.world.sampler import WorldConfig, WorldSampler
from tessera.world.scene import CameraPath, Object, Scene
from tessera.world.truth import clip_arrays, clip_truth

render_scene = render

__all__ = [
    "CameraPath", "Object", "RenderOutput", "Scene", "WorldConfig", "WorldDataset", "WorldSampler",
    "caption_corpus", "captions", "clip_arrays", "clip_truth", "detailed_caption", "render",
    "render_command", "render_scene", "short_caption", "show_command",
]  # fmt: skip


def caption_corpus(count: int, seed: int = 0) -> list[str]:
    """Detailed and short captions of `count` sampled train scenes (2 * count strings, no rendering),
    for training the tokenizer."""
    sampler = WorldSampler(WorldConfig(), "train")
    texts: list[str] = []
    for i in range(count):
        texts.extend(captions(sampler.sample(seed + i)))
    return texts
