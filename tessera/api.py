"""The Python API: `tessera.load()` returns a `Pipeline` whose methods are the capabilities.

    import tessera
    pipe = tessera.load()  # the shipped model; tessera.load("DIR") for a model or Wan 2.1 folder
    video = pipe.generate(pipe.expand("a red cube slides to the left"), frames=17)
    tessera.save(video, "cube.mp4")

Every method returns uint8 frames (T, H, W, 3) on the CPU, and takes the sampling options of
`tessera.sampling.Sampling` as keywords: steps, guidance, seed, sampler, guidance_interval,
negative_prompt, shift, and progress (a function called with (steps done, steps) after each step, or
True for a bar). Left out, each takes its default from `tessera.options.DEFAULTS`, as the command line
does, so the same arguments give the same frames as the command. Given images and videos are uint8
(T, H, W, 3) (or (H, W, 3)) tensors or arrays, or the path of a file to read. A request the model
cannot serve raises `RequestError` (a ValueError) naming the argument, before any work.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tessera import capabilities, folders, sampling
from tessera.checkpoint import Model
from tessera.config import ModelConfig, is_wan
from tessera.options import DEFAULTS as D
from tessera.video import read_video, write_video

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

    from tessera.sampling import Sampling

Frames = torch.Tensor | np.ndarray | str | os.PathLike


def load(path: str | os.PathLike | None = None, device: str = "auto") -> Pipeline:
    """A `Pipeline` of the model folder or Wan 2.1 checkpoint folder at `path` (default: the shipped
    model) on `device` ('auto': a CUDA GPU when there is one, else the CPU)."""
    return Pipeline(folders.load(path, device))


def save(frames: torch.Tensor | np.ndarray, path: str | os.PathLike, fps: float = D.fps) -> Path:
    """Write uint8 frames (T, H, W, 3) to `path` atomically (.mp4, .webm, .gif, .webp, .png for one
    frame, or a folder of PNGs); returns the path."""
    return write_video(path, frames, fps)


def _frames(given: Frames) -> torch.Tensor:
    """Given frames as a tensor: a file is read, an array is wrapped (the capabilities check them)."""
    if isinstance(given, (str, os.PathLike)):
        return read_video(given)
    return torch.as_tensor(given)


class Pipeline:
    """A loaded model and the capabilities on it; see the module's docstring for the options."""

    def __init__(self, model: Model) -> None:
        self.model = model

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return sampling.model_device(self.model)

    def __repr__(self) -> str:
        return f"Pipeline(preset={self.config.preset!r}, device={str(self.device)!r})"

    def expand(self, prompt: str, seed: int = 0, given: Frames | None = None) -> str:
        """The detailed caption that the command line samples from for `prompt` (tessera's models were
        trained on detailed captions of their world), grounded in the `given` frames' scene when given;
        a Wan model takes prompts as written, so it gets `prompt` back. Warnings go to `warnings`."""
        if is_wan(self.config):
            return prompt
        # The captions' grammar and the captioner load only when a prompt is expanded.
        from tessera.caption.expand import expand_for_generate, grounded_caption
        from tessera.caption.weights import load_captioner

        if given is None:
            caption, notes = expand_for_generate(prompt, seed)
        else:
            captioner = load_captioner(None, self.device)
            caption, _, notes = grounded_caption(prompt, _frames(given), seed, captioner)
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return caption

    def generate(
        self,
        prompt: str,
        frames: int = D.frames,
        height: int = D.height,
        width: int = D.width,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """Text-to-video: `frames` (1 + 4k) frames of height x width for `prompt`."""
        return sampling.generate(self.model, prompt, frames, height, width, **options)

    def image(
        self, prompt: str, height: int = D.height, width: int = D.width, **options: Unpack[Sampling]
    ) -> torch.Tensor:
        """Text-to-image: one frame (1, H, W, 3), sampled as a one-frame video."""
        return capabilities.image(self.model, prompt, width, height, **options)[None]

    def animate(
        self,
        image: Frames,
        prompt: str,
        frames: int = D.frames,
        height: int | None = None,
        width: int | None = None,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """Image-to-video: a clip that starts on `image` (its first frame), at its size unless given."""
        still = _frames(image)
        still = still[0] if still.ndim == 4 else still
        return capabilities.animate(self.model, still, prompt, frames, height, width, **options)

    def extend(
        self,
        video: Frames,
        prompt: str,
        frames: int = D.frames,
        direction: str = "forward",
        overlap: int | None = None,
        blend: bool = True,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """`video` continued forward (or backward) by a new clip of `frames` frames that shares `overlap`
        of its frames; returns the source and the new frames joined (`capabilities.extend`)."""
        return capabilities.extend(
            self.model, _frames(video), prompt, frames, direction, overlap, blend=blend, **options
        )

    def connect(
        self,
        video_a: Frames,
        video_b: Frames,
        prompt: str,
        frames: int = D.frames,
        blend: bool = True,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """A bridge of `frames` frames from where A ends to where B starts; returns A, bridge, B joined."""
        a, b = _frames(video_a), _frames(video_b)
        return capabilities.connect(self.model, a, b, prompt, frames, blend=blend, **options)

    def loop(
        self,
        prompt: str,
        frames: int = D.frames,
        video: Frames | None = None,
        height: int = D.height,
        width: int = D.width,
        fade: int | None = None,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """A clip that ends on the frame it starts with: `video`'s first frame, or a sampled one; for
        seamless repeated playback drop the last frame."""
        given = None if video is None else _frames(video)
        return capabilities.loop(self.model, prompt, frames, given, height, width, fade=fade, **options)

    def edit(
        self, video: Frames, prompt: str, strength: float = D.strength, **options: Unpack[Sampling]
    ) -> torch.Tensor:
        """SDEdit: `video` re-imagined under `prompt`, keeping more of it the lower `strength` (0 to 1)."""
        return capabilities.edit(self.model, _frames(video), prompt, strength, **options)

    def long(
        self,
        prompt: str,
        frames: int = D.long_frames,
        window: int = D.window,
        overlap: int | None = None,
        height: int = D.height,
        width: int = D.width,
        blend: bool = True,
        **options: Unpack[Sampling],
    ) -> torch.Tensor:
        """A video longer than the trained length: a window, then forward extensions (window i samples
        with seed + i)."""
        return capabilities.long(self.model, prompt, frames, window, overlap, height, width, blend, **options)
