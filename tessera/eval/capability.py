"""Scores for the conditioned capabilities (image-to-video, extend, connect, loop, edit).

Each takes uint8 videos (T, H, W, 3) and what was given, and returns a float; only `long_permanence`
needs a parse (of the long video, by the scene parser).
"""

from __future__ import annotations

import numpy as np
import torch

from tessera import pipeline
from tessera.capabilities import loop_fade
from tessera.caption.expand import expand, expand_grounded
from tessera.caption.weights import caption_clips, load_captioner
from tessera.eval.recon import psnr
from tessera.eval.temporal import change
from tessera.world.scene import COLOURS


def frame_steps(video: np.ndarray) -> np.ndarray:
    """Mean absolute change of each step of a uint8 video (T, H, W, 3), pixels in [0, 1]: (T - 1,),
    entry i for frame i -> i + 1."""
    x = np.asarray(video).astype(np.float32) / 255
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))


def i2v_psnr(video: np.ndarray, image: np.ndarray) -> float:
    """PSNR (dB) of the first frame against the given image (H, W, 3)."""
    return psnr(video[0], image)


def extend_seam(
    video: np.ndarray, join: int, truth_change: float | None = None, given: np.ndarray | None = None
) -> float:
    """How visible the join is: the step into the first new frame (join - 1 -> join) over the typical
    frame change (the truth's mean consecutive change if given, else the video's own median away from
    the join). With `given` (n, H, W, 3), what the video's frames join - n .. join - 1 were given as
    (`extend` fades them into the model's rendering of them), each step between two of them counts as
    a typical step plus what it adds to the given frames' own step there: a cut spread over the fade
    still counts, and the source's own motion does not. About 1 is seamless; much larger is a cut."""
    if not 1 <= join < len(video):
        raise ValueError(f"join must be in 1..{len(video) - 1}, got {join}")
    n = 1 if given is None else len(given)
    if not 1 <= n <= join:
        raise ValueError(f"given must hold 1..{join} frames (those before the join), got {n}")
    steps = frame_steps(video)
    around = np.arange(join - n, join)  # the steps through the given frames and into the first new one
    typical = truth_change if truth_change is not None else float(np.median(np.delete(steps, around)))
    worst = steps[join - 1]
    if n > 1:
        own = frame_steps(given)  # (n - 1,): the given frames' own steps
        worst = max(worst, typical + float((steps[join - n : join - 1] - own).max()))
    return float(worst / max(typical, 1e-4))


def connect_psnr(video: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Mean PSNR of the video's first len(start) frames against `start` and last len(end) against `end`."""
    return 0.5 * (psnr(video[: len(start)], start) + psnr(video[len(video) - len(end) :], end))


def loop_closure(video: np.ndarray, faded: int = 0) -> float:
    """How the loop closes: the change from the last frame back to the first and, with `faded` > 0, the
    largest step through the last `faded` frames (where `loop` fades the clip back to its first frame:
    a gap spread over the fade still counts), over the median of the video's other consecutive changes.
    About 1 (or less) for a seamless loop; a jump scores high."""
    x = np.asarray(video).astype(np.float32) / 255
    if not 0 <= faded <= len(x) - 2:
        raise ValueError(f"faded must be in 0..{len(x) - 2}, got {faded}")
    steps = frame_steps(video)
    closing = np.append(steps[len(steps) - faded :], np.abs(x[-1] - x[0]).mean())
    typical = float(np.median(steps[: len(steps) - faded]))
    return float(closing.max() / max(typical, 1e-4))


def edit_monotonic(source: np.ndarray, edits: list[tuple[float, np.ndarray]]) -> float:
    """Fraction of strength pairs (s_i < s_j) whose edits are at least as far from the source (mean
    absolute pixel difference) for the larger strength: 1 = distance grows with strength (Kendall-style)."""
    d = sorted((s, float(np.abs(v.astype(np.float32) - source.astype(np.float32)).mean())) for s, v in edits)
    pairs = [(a, b) for i, a in enumerate(d) for b in d[i + 1 :] if b[0] > a[0]]
    return float(np.mean([b[1] >= a[1] for a, b in pairs])) if pairs else 1.0


def long_permanence(objects: list[tuple[str, str]], parse, segments: list[tuple[int, int]]) -> float:
    """Objects kept across the joins of a rolling-window video: for each prompt object (shape, colour)
    seen in most frames of the first segment, the fraction of later segments [a, b) in which it is seen
    in most frames (its parse track: `parse.find(shape, colour)`); the mean over such objects. 0 when no
    prompt object is seen in the first segment (nothing was drawn to keep)."""
    kept = []
    for shape, colour in objects:
        track = parse.find(shape, colour)
        if track is None:
            continue
        seen = [bool(track.present[a:b].mean() >= 0.5) for a, b in segments]
        if seen[0]:
            kept.append(float(np.mean(seen[1:])) if len(seen) > 1 else 1.0)
    return float(np.mean(kept)) if kept else 0.0


CAPABILITY_METRICS = (
    "i2v_psnr",
    "extend_seam",
    "connect_psnr",
    "loop_closure",
    "edit_monotonic",
    "long_permanence",
)
LONG_TIMES = 4  # `long` runs at this many times the suite's clip length, in windows of that length
EDIT_STRENGTHS = (0.3, 0.6, 0.9)


def half_clip(frames: int) -> int:
    """Frames in the first half of a clip of `frames`, rounded down to the 1 + 4k a given prefix needs."""
    return 1 + (frames - 1) // 2 // 4 * 4


def recolour(caption: str) -> str:
    """The caption with its first colour word swapped for another (the edit prompt); unchanged if none."""
    words = caption.split(" ")
    for i, w in enumerate(words):
        if w in COLOURS:
            words[i] = next(c for c in COLOURS if c not in (w, "white"))
            return " ".join(words)
    return caption


def user_prompts(prompt: str, truth: np.ndarray, seed: int = 0, captioner=None) -> dict[str, str]:
    """The caption each capability's command expands `prompt` (what a person types) to, as the CLI does
    by default: grounded in the frames it is given (`expand.grounded_caption`), plain expansion for a
    loop and a long video without given frames; edit's prompt is the recoloured one."""
    clip = torch.as_tensor(truth)
    given = {"animate": clip[:1], "extend": clip[: half_clip(len(clip))], "connect": clip[:5], "edit": clip}
    readings = caption_clips(captioner or load_captioner(), list(given.values()))
    out = {k: expand_grounded(prompt, r, seed).caption for k, r in zip(given, readings, strict=True)}
    out["edit"] = expand_grounded(recolour(prompt), readings[-1], seed).caption
    out["loop"] = out["long"] = expand(prompt, seed).caption
    return out


def capability_scores(
    model, caption: str, truth: np.ndarray, sampling: dict, objects=(), parse_fn=None,
    prompt: str | None = None,
) -> dict[str, float]:  # fmt: skip
    """Run each conditioned capability of `model` on a truth clip (T, H, W, 3) uint8 with its caption and
    score it: i2v_psnr (animate its first frame), extend_seam (extend its first half forward, all of
    it shared with the new clip and faded into the model's rendering of it, against the truth's mean
    frame change), connect_psnr (bridge its head to its tail: the bridge's own first 5
    and last 4 frames against the given ones), loop_closure (a loop of the caption), edit_monotonic
    (SDEdit toward a recoloured caption at EDIT_STRENGTHS); with `parse_fn` (uint8 video -> parse) also
    long_permanence of `objects` ((shape, colour) pairs) in a `long` video LONG_TIMES the clip's length,
    in windows of the clip's length (segments: the first window, then each extension's new frames).
    With `prompt` (the short prompt a person types) every command gets what the CLI would expand it to
    (`user_prompts`), instead of the scene's detailed `caption`."""
    frames, h, w = truth.shape[:3]
    half = half_clip(frames)
    clip = torch.as_tensor(truth)
    truth_change = change(truth)
    said = dict.fromkeys(("animate", "extend", "connect", "loop", "long"), caption)
    said["edit"] = recolour(caption)
    if prompt is not None:
        said = user_prompts(prompt, truth, sampling.get("seed", 0))
    animated = pipeline.animate(model, clip[0], said["animate"], frames, **sampling).numpy()
    extended = pipeline.extend(model, clip[:half], said["extend"], frames, "forward", **sampling).numpy()
    _, z = pipeline.connect(
        model, clip[:5], clip[-4:], said["connect"], frames, return_latents=True, **sampling
    )
    bridge = pipeline.decode(model, z).numpy()
    looped = pipeline.loop(model, said["loop"], frames, height=h, width=w, **sampling).numpy()
    edits = [(s, pipeline.edit(model, clip, said["edit"], s, **sampling).numpy()) for s in EDIT_STRENGTHS]
    long_score = None
    if parse_fn is not None:
        length = 1 + LONG_TIMES * (frames - 1)
        video = pipeline.long(model, said["long"], length, frames, height=h, width=w, **sampling).numpy()
        segments, _ = pipeline.long_segments(length, frames)
        long_score = long_permanence(list(objects), parse_fn(video), segments)
    return {
        "long_permanence": long_score,
        "i2v_psnr": i2v_psnr(animated, truth[0]),
        "extend_seam": extend_seam(extended, half, truth_change, given=truth[:half]),
        "connect_psnr": connect_psnr(bridge, truth[:5], truth[-4:]),
        "loop_closure": loop_closure(looped, loop_fade(frames)),
        "edit_monotonic": edit_monotonic(truth, edits),
    }


__all__ = [
    "CAPABILITY_METRICS",
    "capability_scores",
    "long_permanence",
    "change",
    "connect_psnr",
    "edit_monotonic",
    "extend_seam",
    "frame_steps",
    "i2v_psnr",
    "loop_closure",
]
