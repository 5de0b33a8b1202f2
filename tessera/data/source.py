"""Training samples by global index: `source.sample(i)` is a pure function of (source, seed, i).

Trainers address samples by a global index (step * batch_size + position in the batch), so a run
resumes at the exact sample it stopped at, and a batch split over ranks holds the same clips as in one
process. Each sample is a dict: `video` (3, T, H, W) float in [-1, 1] already fitted to a bucket,
`caption`, `short_caption`, and `key` (the underlying clip's id, for latent caching).

- `WorldSource`: clip i of the synthetic world (rendered on the training device), at a shape drawn
  from the weighted `shapes` by (seed, i); with `clips > 0` it repeats its first `clips` clips and
  keeps each one rendered (uint8, on the device) after its first use, so an epoch past the first
  costs no rendering.
- `FolderSource`: a `FolderDataset` visited in a fresh seeded permutation each epoch; each file goes
  to its nearest bucket.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tessera.data.buckets import Shape, nearest_bucket, pick_shape
from tessera.data.folder import FolderDataset
from tessera.seeding import generator
from tessera.video import to_tensor
from tessera.world.dataset import render_clips, scene_seed
from tessera.world.sampler import WorldConfig, WorldSampler


class FolderSource:
    """A user's folder or manifest as an indexable, endlessly repeating stream."""

    def __init__(self, path: str | Path, shapes: list[tuple[Shape, float]], seed: int = 0) -> None:
        self.dataset = FolderDataset(path)
        self.buckets = [s for s, _ in shapes]
        self.seed = seed
        self.size = len(self.dataset)

    def item(self, index: int) -> int:
        """The dataset item at global index `index` (epoch-wise seeded permutation)."""
        epoch, j = divmod(index, self.size)
        return int(torch.randperm(self.size, generator=generator(self.seed, "epoch", epoch))[j])

    def key(self, index: int, shape: Shape | None = None) -> int:
        """The id of the clip behind global index `index` (for caches; any shape is fitted from it)."""
        return self.item(index)

    def sample(self, index: int, shape: Shape | None = None) -> dict:
        """The sample at global index `index`, fitted to `shape` (default: its nearest bucket)."""
        i = self.item(index)
        shape = shape or nearest_bucket(*self.dataset.size(i), self.buckets)
        return {**self.dataset.load(i, shape), "key": i}


class WorldSource:
    """Clips of the synthetic world at weighted shapes; `clips > 0` makes the set finite (for caching).

    Clip i is the scene of `tessera.world.dataset.scene_seed(seed, 0, i)`: the rank is always 0 here
    because the global index already says which rank takes which clip.
    """

    def __init__(
        self,
        shapes: list[tuple[Shape, float]],
        seed: int = 0,
        clips: int = 0,
        device: torch.device | str = "cpu",
        split: str = "train",
        objects: bool = False,
    ) -> None:
        self.shapes, self.seed, self.device, self.split = shapes, seed, torch.device(device), split
        self.objects = objects  # samples carry `objects`, the (T, H, W) bool mask of object pixels
        self.size = clips or None
        self._samplers: dict[int, WorldSampler] = {}  # frames -> the sampler of clips that long
        self._kept: dict[tuple, dict] = {}  # (clip, shape) -> a `render_clips` dict: finite sets
        # Each shape's share of a finite set, (first clip, count) in proportion to its weight.
        edges = torch.tensor([0.0] + [w for _, w in shapes]).cumsum(0) / sum(w for _, w in shapes)
        firsts = [round(float(e) * clips) for e in edges]
        self._shares = {
            s: (a, max(1, b - a)) for (s, _), a, b in zip(shapes, firsts, firsts[1:], strict=False)
        }

    def key(self, index: int, shape: Shape | None = None) -> int:
        """The id of the clip behind global index `index` (for caches). In a finite set, clips asked for
        at one given `shape` (one shape per training step) come from that shape's share of the set, in
        proportion to its weight, so each clip is kept at one shape and memory stays at `clips` clips."""
        if not self.size:
            return index
        offset, count = self._shares.get(shape, (0, self.size))
        return offset + index % count

    def shares(self, shape: Shape) -> int:
        """How many clips of a finite set come at `shape` (see `key`)."""
        return self._shares.get(shape, (0, self.size))[1]

    def forget(self, shape: Shape) -> None:
        """Drop the kept renders of `shape` (their pixels are no longer needed, e.g. once encoded)."""
        self._kept = {k: v for k, v in self._kept.items() if k[1] != shape}

    def sample(self, index: int, shape: Shape | None = None) -> dict:
        """The sample at global index `index`: a world clip rendered at a drawn shape (or `shape`)."""
        return self.samples([index], shape)[0]

    def samples(self, indices: list[int], shape: Shape | None = None) -> list[dict]:
        """Several samples, rendered in one batch per shape (much faster on a GPU). Each clip draws its
        shape from the weighted shapes, unless `shape` is given for all."""
        clips = [self.key(i, shape) for i in indices]
        shapes = [shape or pick_shape(self.shapes, generator(self.seed, "shape", c)) for c in clips]
        keys = list(zip(clips, shapes, strict=True))  # a clip is kept once per shape it is drawn at
        rendered = {k: self._kept[k] for k in keys if k in self._kept}
        todo = list(dict.fromkeys(k for k in keys if k not in rendered))
        for s in dict.fromkeys(s for _, s in todo):  # s = (T, H, W)
            group = [c for c, s_c in todo if s_c == s]
            seeds = [scene_seed(self.seed, 0, c) for c in group]
            made = render_clips(
                self._sampler(s[0]), seeds, (s[2], s[1]), self.device, with_objects=self.objects
            )
            rendered |= {(c, s): clip for c, clip in zip(group, made, strict=True)}
        if self.size:
            self._kept.update(rendered)
        return [
            {"video": to_tensor(rendered[k]["frames"]), "caption": rendered[k]["caption"],
             "short_caption": rendered[k]["short_caption"], "key": k[0],
             **({"objects": rendered[k]["objects"]} if self.objects else {})}
            for k in keys
        ]  # fmt: skip

    def _sampler(self, frames: int) -> WorldSampler:
        """The scene sampler of clips `frames` long (made once per length)."""
        if frames not in self._samplers:
            self._samplers[frames] = WorldSampler(WorldConfig(frames=frames), self.split)
        return self._samplers[frames]


# Clips fetched at a time while a trainer builds a kept set from a finite source (bounds the memory of
# rendering them, and of encoding them where the trainer does).
BUILD_CHUNK = 128


def share(source, shape: Shape) -> int:
    """How many clips of a finite source come at `shape` (a world set's share, or all of a folder)."""
    shares = getattr(source, "shares", None)
    return shares(shape) if shares is not None else source.size


def samples(source, indices: list[int], shape: Shape | None = None) -> list[dict]:
    """`source.samples(indices)` when the source batches its work, else one `sample` call per index;
    `shape` (if not None) fits every sample to that one shape."""
    if hasattr(source, "samples"):
        return source.samples(list(indices), *([shape] if shape else []))
    return [source.sample(i, *([shape] if shape else [])) for i in indices]


def make_source(
    data: str,
    shapes: list[tuple[Shape, float]],
    seed: int,
    device: torch.device | str = "cpu",
    world_clips: int = 0,
    objects: bool = False,
) -> FolderSource | WorldSource:
    """'world' -> WorldSource (with `objects`, its samples carry object masks); a folder or
    manifest.jsonl -> FolderSource."""
    if data == "world":
        return WorldSource(shapes, seed=seed, clips=world_clips, device=device, objects=objects)
    return FolderSource(data, shapes, seed=seed)
