"""The capabilities on top of one sampler call: text-to-image, image-to-video, extending, connecting,
looping, editing and long videos. Each decides which pixel frames are given (`tessera.conditioning`)
and the shapes, calls `sampling.conditioned` (or `sample_latents`) once per window, and decodes.

Which pixel frames are given decides everything else, exactly as in training: the latent frames held
clean are `given_latents(mask)` (exact only for a given prefix, by the VAE's causality), and the DiT's
`cond` input is `build_cond(vae, clip, mask)` for any non-empty mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tessera.checkpoint import Model
from tessera.conditioning import pixel_mask_for
from tessera.frames import crossfade, fit, size_of, to_clip
from tessera.options import DEFAULTS as D
from tessera.requests import (
    RequestError,
    check_edit_frames,
    check_fade,
    check_forcing,
    check_frames,
    check_strength,
    forcing,
)
from tessera.sampling import (
    Sampling,
    conditioned,
    decode,
    encode,
    generate,
    latent_shape,
    request_shape,
    sample_latents,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


LOOP_FADE = 8  # most frames over which `loop` fades out what is left of the gap back to its first frame


def _out(
    model: Model, z: torch.Tensor, return_latents: bool
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    frames = decode(model, z)
    return (frames, z) if return_latents else frames


def image(
    model: Model, prompt: str, height: int = D.height, width: int = D.width, **sampling: Unpack[Sampling]
) -> torch.Tensor:
    """Text-to-image: uint8 (H, W, 3), sampled as a one-frame video; large frames decode in tiles."""
    return generate(model, prompt, 1, height, width, **sampling)[0]


def animate(
    model: Model,
    image: torch.Tensor,
    prompt: str,
    frames: int = D.frames,
    height: int | None = None,
    width: int | None = None,
    return_latents: bool = False,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Image-to-video: uint8 (frames, H, W, 3) starting at `image (H, W, 3)`, or at the first frame of a
    video (T, H, W, 3); the size is the image's own unless given.

    Pixel frame 0 is given; latent frame 0 (the image encoded alone, exact by causality) is held clean.
    """
    image = torch.as_tensor(image)
    image = image[0] if image.ndim == 4 else image
    height, width = size_of(image, height, width)
    request_shape(model, frames, height, width, "the image")
    still = fit(image, height, width, "image")
    z = conditioned(model, prompt, to_clip(still, frames, 0), pixel_mask_for("i2v", frames), **sampling)
    return _out(model, z, return_latents)


def extend(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    frames: int = D.frames,
    direction: str = "forward",
    overlap: int | None = None,
    return_latents: bool = False,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Continue `video (T, H, W, 3)` forward or backward with a new clip of `frames` frames.

    forward: the new clip's first `overlap` frames (1 + 4k, a prefix) are the source's last `overlap`
    frames, re-encoded as a clip of their own and held clean (exact by causality). Returns the source
    followed by the new clip's frames after the overlap: T + frames - overlap frames.
    backward: the new clip's last `overlap` frames (4k) are the source's first `overlap` frames, given
    through `cond` only (their latents depend on the unknown frames before them). Returns the new
    clip's frames before the overlap followed by the source.
    With `blend` the source's overlap frames fade into the new clip's rendering of them (`crossfade`:
    the frame farthest from the join stays the source's), so the join shows no cut; every other source
    frame comes back unchanged. Without it the whole source comes back unchanged.
    """
    video = torch.as_tensor(video)
    request_shape(model, frames, int(video.shape[1]), int(video.shape[2]), "the video")
    if direction not in ("forward", "backward"):
        raise RequestError(f"direction must be 'forward' or 'backward'; got '{direction}'")
    t_z = 1 + (frames - 1) // 4
    if t_z < 2:
        raise RequestError(f"--frames must be at least 5 to extend (one new latent frame); got {frames}")
    k = _overlap_latents(overlap, t_z, len(video), direction)
    new, z, n = _extension(model, video, prompt, frames, direction, k, **sampling)
    joined = join_clip(video, new, n, direction, blend)
    return (joined, z) if return_latents else joined


def _extension(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    frames: int,
    direction: str,
    k: int,
    **sampling: Unpack[Sampling],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`extend`'s new clip, for a checked request that shares `k` latent frames' worth of the source: its
    frames (frames, H, W, 3), its latents, and n, the source frames it shares."""
    if direction == "forward":
        n = 1 + 4 * (k - 1)  # given prefix frames
        mask = pixel_mask_for("extend", frames, k)
        clip = to_clip(video[len(video) - n :], frames, 0)
    else:
        n = 4 * k
        mask = pixel_mask_for("tail", frames, k)
        clip = to_clip(video[:n], frames, frames - n)
    z = conditioned(model, prompt, clip, mask, **sampling)
    return decode(model, z), z, n


def join_clip(video: torch.Tensor, new: torch.Tensor, n: int, direction: str, blend: bool) -> torch.Tensor:
    """The source and a new clip that shares `n` of its frames, each shared frame once (faded, with
    `blend`, from the source's frame farthest from the join into the new clip's frame at it)."""
    if direction == "forward":
        shared = crossfade(video[len(video) - n :], new[:n]) if blend else video[len(video) - n :]
        return torch.cat([video[: len(video) - n], shared, new[n:]])
    shared = crossfade(new[-n:], video[:n]) if blend else video[:n]
    return torch.cat([new[:-n], shared, video[n:]])


def _overlap_latents(overlap: int | None, t_z: int, source: int, direction: str) -> int:
    """The task's k from the overlap in pixel frames (default: about half the new clip, as fits)."""
    if direction == "forward":
        fits = min(t_z - 1, 1 + (source - 1) // 4)  # 1 + 4(k - 1) <= source, one latent left to make
        if overlap is None:
            return max(1, min(fits, (t_z + 1) // 2))
        if (overlap - 1) % 4 or not 1 <= overlap <= 1 + 4 * (fits - 1):
            raise RequestError(
                f"forward --overlap must be 1 + 4k frames between 1 and {1 + 4 * (fits - 1)}; got {overlap}"
            )
        return 1 + (overlap - 1) // 4
    fits = min(t_z - 1, source // 4)
    if fits < 1:
        raise RequestError(f"extending backward needs a source of at least 4 frames; got {source}")
    if overlap is None:
        return max(1, min(fits, t_z // 2))
    if overlap % 4 or not 4 <= overlap <= 4 * fits:
        raise RequestError(
            f"backward --overlap must be a multiple of 4 between 4 and {4 * fits}; got {overlap}"
        )
    return overlap // 4


def connect(
    model: Model,
    video_a: torch.Tensor,
    video_b: torch.Tensor,
    prompt: str,
    frames: int = D.frames,
    return_latents: bool = False,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A bridge of `frames` frames from where A ends to where B starts: returns A, the bridge, B joined.

    The trained `connect` pattern: the bridge starts with A's last 5 frames (a prefix: two latent
    frames held clean, exact, and they carry A's motion into the bridge) and ends with B's first 4
    (through `cond`). Bridges shorter than 17 frames, or clips too short to lend those frames, use the
    `first_last` pattern: one frame from each. B is fitted to A's size when only the scale differs.
    Shared frames appear once: A + the bridge's new frames + B. With `blend` the shared frames fade
    between the given clips and the bridge's rendering of them, as in `extend`.
    """
    video_a = torch.as_tensor(video_a)
    height, width = int(video_a.shape[1]), int(video_a.shape[2])
    request_shape(model, frames, height, width, "the first video")
    if frames < 5:
        raise RequestError(f"--frames must be at least 5 to connect two clips; got {frames}")
    video_b = fit(video_b, height, width, "second video")
    with_motion = frames >= 17 and len(video_a) >= 5 and len(video_b) >= 4
    mask = pixel_mask_for("connect", frames, 3) if with_motion else pixel_mask_for("first_last", frames)
    head, tail = (5, 4) if with_motion else (1, 1)
    clip = to_clip(video_a[-head:], frames, 0)
    clip[:, frames - tail :] = to_clip(video_b[:tail], tail, 0)
    z = conditioned(model, prompt, clip, mask, **sampling)
    bridge = decode(model, z)
    blend = blend and with_motion  # (one shared frame each: nothing to fade through, the given ones stay)
    joined = join_clip(video_b, join_clip(video_a, bridge, head, "forward", blend), tail, "backward", blend)
    return (joined, z) if return_latents else joined


def loop(
    model: Model,
    prompt: str,
    frames: int = D.frames,
    video: torch.Tensor | None = None,
    height: int = D.height,
    width: int = D.width,
    return_latents: bool = False,
    fade: int | None = None,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A clip of `frames` frames that starts and ends on the same frame (the trained `loop` pattern).

    The loop frame is `video`'s first frame (fitted to height x width) or, without a video, a
    one-frame sample of `prompt`. Latent 0 is held clean; the far end goes through `cond`, and the model
    brings the clip back to the loop frame itself. (Overwriting the last latent frame with the first, as
    this did before, made the ends worse: with the shipped model the last-to-first change was 3.9-8.4
    times the clip's median frame change on three quick-suite prompts, against 1.4-2.9 without; the
    first latent decodes to one frame, any later one to four.) What the model leaves of the gap is
    faded out over the last `fade` frames (`close_loop`; default `loop_fade(frames)`; 0: as decoded), so
    the last frame is the first exactly: for seamless repeated playback drop the last frame.
    """
    request_shape(model, frames, height, width)  # the whole request, before the still is sampled
    if frames < 5:
        raise RequestError(f"--frames must be at least 5 to loop; got {frames}")
    fade = loop_fade(frames) if fade is None else fade
    check_fade(fade, frames)
    if video is None:
        one = latent_shape(1, height, width, model.config.vae.space_factor)
        still = decode(model, sample_latents(model, prompt, one, **sampling))
    else:
        still = fit(torch.as_tensor(video)[:1], height, width, "video")
    clip = to_clip(still, frames, 0)
    clip[:, -1] = clip[:, 0]
    z = conditioned(model, prompt, clip, pixel_mask_for("loop", frames), **sampling)
    looped = close_loop(decode(model, z), fade)
    return (looped, z) if return_latents else looped


def loop_fade(frames: int) -> int:
    """`loop`'s default fade: LOOP_FADE frames, at most half the clip's steps (8 of 17 or 33, 4 of 9).

    On the quick suite's 17-frame loops (`python bench/seams.py`, CPU, 2026-12-04) the closing's largest
    step was 2.08 times the clip's median frame change as decoded, 1.57 with 4 frames faded and 1.17 with
    8 (every prompt within 1.5 with 8, against 4 of 8 as decoded)."""
    return min(LOOP_FADE, (frames - 1) // 2)


def close_loop(frames_u8: torch.Tensor, fade: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) with its last `fade` frames faded toward its first (`crossfade`), linearly,
    so that the last frame is the first exactly; `fade` 0 returns the frames as they are."""
    check_fade(fade, len(frames_u8))
    if fade == 0:
        return frames_u8
    n = fade + 1  # the first of these keeps its weight 0: `fade` frames change
    tail = crossfade(frames_u8[-n:], frames_u8[:1].expand(n, -1, -1, -1))
    return torch.cat([frames_u8[:-n], tail])


def edit(
    model: Model,
    video: torch.Tensor,
    prompt: str,
    strength: float = D.strength,
    return_latents: bool = False,
    **sampling: Unpack[Sampling],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SDEdit: re-imagine `video (T, H, W, 3)` under `prompt`, keeping more of it the lower `strength`.

    The source latents are noised to `t = strength` and the flow is integrated from there (0 returns
    the source latents exactly; 1 ignores the source).
    """
    video = torch.as_tensor(video)
    frames, height, width = (int(v) for v in video.shape[:3])
    check_edit_frames(frames)
    request_shape(model, frames, height, width, "the video")
    check_strength(strength)  # before the source is encoded
    check_forcing(model.config, **forcing(sampling))
    x0_src = encode(model, video)
    z = sample_latents(model, prompt, tuple(x0_src.shape[2:]), x0_src=x0_src, strength=strength, **sampling)
    return _out(model, z, return_latents)


def long(
    model: Model,
    prompt: str,
    frames: int = D.long_frames,
    window: int = D.window,
    overlap: int | None = None,
    height: int = D.height,
    width: int = D.width,
    blend: bool = True,
    **sampling: Unpack[Sampling],
) -> torch.Tensor:
    """A video longer than the trained length: a text-to-video window, then forward extensions.

    Each later window's prefix is the previous windows' last `overlap` frames (1 + 4k), re-encoded
    from pixels and held clean, as in `extend`; window i samples with seed + i (`seed` default 0).
    With `blend` the returned video fades across each overlap as `extend` does, but every window is
    conditioned on the frames as sampled, so `blend` changes only what is shown, never what is sampled.
    (Conditioned on the faded frames instead, each prefix would start on a VAE round trip of the last;
    tried on the quick suite, long_permanence read lower, by no more than its noise: no reason to.)
    """
    segments, overlap = long_segments(frames, window, overlap)
    first = request_shape(model, segments[0][1], height, width)  # no later window is longer
    seed = sampling.pop("seed", 0)
    sampled = decode(model, sample_latents(model, prompt, first, seed=seed, **sampling))
    shown, k = sampled, 1 + (overlap - 1) // 4
    for i, (a, b) in enumerate(segments[1:], start=1):  # the last window may be shorter
        size = overlap + b - a  # 1 + 4j frames, sharing `overlap` (k latent frames) with the last window
        new, _, n = _extension(model, sampled, prompt, size, "forward", k, seed=seed + i, **sampling)
        sampled = join_clip(sampled, new, n, "forward", blend=False)  # what the next window is given
        shown = join_clip(shown, new, n, "forward", blend)
    return shown


def long_segments(
    frames: int, window: int = D.window, overlap: int | None = None
) -> tuple[list[tuple[int, int]], int]:
    """How `long` lays out a video: the frames [a, b) each window adds (the first window, then each
    extension's new frames), and the overlap in frames (default: about half a window, 1 + 4k)."""
    check_frames(frames)
    check_frames(window, "--window")
    if window < 9:
        raise RequestError(f"--window must be at least 9 frames; got {window}")
    t_z = 1 + (window - 1) // 4
    overlap = 1 + 4 * ((t_z - 1) // 2) if overlap is None else overlap
    if (overlap - 1) % 4 or not 1 <= overlap <= window - 4:
        raise RequestError(f"--overlap must be 1 + 4k frames between 1 and {window - 4}; got {overlap}")
    cuts = [0, min(frames, window), *range(window + window - overlap, frames, window - overlap)]
    cuts = sorted(set(cuts + [frames]))
    return list(zip(cuts, cuts[1:], strict=False)), overlap
