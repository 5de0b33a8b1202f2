"""A torch IterableDataset that renders world clips straight into training: no disk.

Sample `index` of rank `rank` is the scene drawn from seed `mix(seed, rank, index)`, so the stream is
deterministic by (seed, rank, index) whatever the number of DataLoader workers: worker w of W takes
the indices i with i % W == w. Scenes are rendered `render_batch` at a time on `device` (batched on a
GPU), then yielded one by one.

`render_clips` (seeds -> rendered, captioned clips) is shared with the trainers' `WorldSource`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tessera.video import to_tensor
from tessera.world.captions import captions
from tessera.world.render import render
from tessera.world.sampler import WorldConfig, WorldSampler
from tessera.world.truth import clip_arrays

MASK64 = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 62-bit seed from integers (splitmix64 steps): nearby inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & MASK64)) * 0xBF58476D1CE4E5B9 & MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & MASK64
        h ^= h >> 31
    return h >> 2


def scene_seed(seed: int, rank: int, index: int) -> int:
    """The scene seed of sample `index` on `rank`."""
    return mix(seed, rank, index)


def render_clips(
    sampler: WorldSampler,
    seeds: list[int],
    size: tuple[int, int],
    device: str | torch.device = "cpu",
    antialias: bool = True,
    with_truth: bool = False,
    with_objects: bool = False,
) -> list[dict]:
    """The scenes `sampler` draws from `seeds`, rendered in one batch at size (width, height) on
    `device`. Per clip: `frames` uint8 (T, H, W, 3), `caption` (detailed), `short_caption`, `seed`;
    with `with_truth` also `ids` and `depth` (T, H, W) as numpy arrays, and with `with_objects` the mask
    `objects` bool (T, H, W) of pixels showing an object, on `device`."""
    scenes = [sampler.sample(s) for s in seeds]
    out = render(scenes, size, device, antialias=antialias)
    clips = []
    for b, scene in enumerate(scenes):
        detailed, short = captions(scene)
        clip = {"frames": out.frames[b], "caption": detailed, "short_caption": short, "seed": scene.seed}
        if with_truth:
            clip |= {k: torch.as_tensor(v) for k, v in clip_arrays(out, b).items()}
        if with_objects:
            clip["objects"] = out.ids[b] > 0
        clips.append(clip)
    return clips


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class WorldDataset(IterableDataset):
    """Yields dicts: `video` float (3, T, H, W) in [-1, 1] on `device`, `caption` (detailed),
    `short_caption`, `seed`, and with `with_truth` also `ids` (T, H, W) and `depth` (T, H, W)."""

    def __init__(
        self,
        cfg: WorldConfig | None = None,
        split: str = "train",
        seed: int = 0,
        size: tuple[int, int] = (128, 128),
        device: str | torch.device = "cpu",
        length: int | None = None,
        render_batch: int = 1,
        with_truth: bool = False,
        antialias: bool = True,
        rank: int | None = None,
    ) -> None:
        self.sampler = WorldSampler(cfg, split)
        self.seed, self.size, self.device = seed, size, device
        self.length, self.render_batch = length, max(1, render_batch)
        self.with_truth, self.antialias, self.rank = with_truth, antialias, rank

    def indices(self) -> Iterator[int]:
        """The sample indices this process (rank) and DataLoader worker produce, in order."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stop = self.length if self.length is not None else None
        return itertools.islice(itertools.count(), worker, stop, workers)

    def __iter__(self) -> Iterator[dict]:
        rank = self.rank if self.rank is not None else _rank_world()[0]
        batch: list[int] = []
        for index in self.indices():
            batch.append(index)
            if len(batch) == self.render_batch:
                yield from self._render(rank, batch)
                batch = []
        if batch:
            yield from self._render(rank, batch)

    def _render(self, rank: int, indices: list[int]) -> Iterator[dict]:

        seeds = [scene_seed(self.seed, rank, i) for i in indices]
        clips = render_clips(self.sampler, seeds, self.size, self.device, self.antialias, self.with_truth)
        for index, clip in zip(indices, clips, strict=True):
            yield {"video": to_tensor(clip.pop("frames")), **clip, "index": index}  # video (3, T, H, W)
