"""The Python API: `tessera.load()` returns a `Pipeline` whose methods are the capabilities.

    import tessera
    pipe = tessera.load()  # the shipped model; tessera.load("DIR") for a model or Wan 2.1 folder
    video = pipe.generate(pipe.expand("a red cube slides to the left"), frames=17)
    tessera.save(video, "cube.mp4")

Every capability is a method with the capability's own parameters (`tessera.capabilities`; `generate`
from `tessera.sampling`), less the model. Every method returns uint8 frames (T, H, W, 3) on the CPU,
and takes the sampling options of `tessera.sampling.Sampling` as keywords: steps, guidance, seed,
sampler, guidance_interval, negative_prompt, shift, guidance_rule, and progress (a function called with
(steps done, steps) after each step, or True for a bar). Left out, each takes its default from
`tessera.options.DEFAULTS`, as the command line does, so the same arguments give the same frames as the
command. Given images and videos are uint8 (T, H, W, 3) (or (H, W, 3)) tensors or arrays, or the path of
a file to read. A request the model cannot serve raises `RequestError` (a ValueError) naming the
argument, before any work.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tessera import capabilities, folders, sampling
from tessera.checkpoint import Model
from tessera.config import ModelConfig, is_wan
from tessera.options import DEFAULTS as D
from tessera.video import read_video, write_video

Frames = torch.Tensor | np.ndarray | str | os.PathLike


def load(path: str | os.PathLike | None = None, device: str = "auto") -> Pipeline:
    """A `Pipeline` of the model folder or Wan checkpoint folder at `path` (default: the shipped
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


def _method(capability: Callable, result: Callable = lambda frames: frames) -> Callable:
    """A `Pipeline` method that calls `capability` on the pipeline's model: its parameters are the
    capability's own (names, order, defaults; the model left out, and `return_latents`: methods return
    frames), so the two cannot drift apart. A given image or video (a parameter the capability takes as
    a tensor) may also be an array or a file (`_frames`); `result` shapes what the capability returns."""
    own, hidden = inspect.signature(capability).parameters.values(), {"model", "return_latents"}
    params = [p for p in own if p.name not in hidden]
    given = {p.name for p in params if "torch.Tensor" in str(p.annotation)}
    keywords = [p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.Signature(
        [this, *(p.replace(annotation="Frames") if p.name in given else p for p in params)]
    )

    def method(self: Pipeline, *args, **kwargs) -> torch.Tensor:
        values = signature.bind(self, *args, **kwargs).arguments
        del values["self"]
        options = values.pop(keywords[0], {}) if keywords else {}  # the sampling options
        if hidden & options.keys():
            raise TypeError(
                f"{capability.__name__}() got an unexpected keyword {min(hidden & options.keys())!r}"
            )
        for name in given & values.keys():
            values[name] = None if values[name] is None else _frames(values[name])
        return result(capability(self.model, **values, **options))

    method.__signature__, method.__doc__ = signature, capability.__doc__
    method.__name__ = method.__qualname__ = capability.__name__
    return method


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

    # The capabilities as methods: each one's parameters are the capability's own (see `_method`).
    generate = _method(sampling.generate)
    image = _method(capabilities.image, lambda frame: frame[None])  # one frame as a one-frame video
    animate = _method(capabilities.animate)
    extend = _method(capabilities.extend)
    connect = _method(capabilities.connect)
    loop = _method(capabilities.loop)
    edit = _method(capabilities.edit)
    long = _method(capabilities.long)
