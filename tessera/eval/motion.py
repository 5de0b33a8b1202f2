"""Image motion measured from pixels: global camera-induced motion and point tracks.

`global_motion` fits one translation + zoom per frame pair to the background by Gauss-Newton
(Lucas & Kanade 1981; hierarchical model-based, Bergen et al. 1992). `track_points` follows Shi-Tomasi
corners (Shi & Tomasi 1994) with pyramidal Lucas-Kanade (the KLT tracker). Both work on grey frames in
[0, 1] as torch tensors on the CPU; pixel centres sit at integer coordinates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WORK_SIDE = 128  # frames larger than this are downscaled first (speed; motion is given in fractions)


def grey(video: np.ndarray, side: int = WORK_SIDE) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 1, h, w) luminance in [0, 1], downscaled so max(h, w) <= side."""
    x = torch.from_numpy(np.ascontiguousarray(video)).float().div(255)
    y = (x * torch.tensor([0.299, 0.587, 0.114])).sum(-1)[:, None]  # (T, 1, H, W)
    scale = side / max(y.shape[-2:])
    if scale < 1:
        y = F.interpolate(y, scale_factor=scale, mode="area")
    return y


def sample(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of images (N, 1, H, W) at pixel coordinates xy (N, P, 2) -> (N, P); border
    values are repeated outside."""
    h, w = img.shape[-2:]
    g = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], -1)
    return F.grid_sample(img, g[:, :, None], mode="bilinear", padding_mode="border", align_corners=False)[
        :, 0, :, 0
    ]


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference gradients (N, 1, H, W) each."""
    gx = F.pad(img[..., :, 2:] - img[..., :, :-2], (1, 1, 0, 0), mode="replicate") / 2
    gy = F.pad(img[..., 2:, :] - img[..., :-2, :], (0, 0, 1, 1), mode="replicate") / 2
    return gx, gy


def global_motion(frames: torch.Tensor, keep: torch.Tensor | None = None, iters: int = 6) -> np.ndarray:
    """Per frame pair (t -> t+1) the translation (dx, dy) in frame widths and zoom s (relative scale
    change about the centre) that best map frame t+1 onto frame t, fitted on pixels where `keep`
    (T, 1, H, W) bool is True (the background). Returns (T - 1, 3)."""
    t_len, _, h, w = frames.shape
    if t_len < 2:
        return np.zeros((0, 3))
    i0, i1 = frames[:-1], frames[1:]
    wgt = torch.ones_like(i0) if keep is None else (keep[:-1] & keep[1:]).float()
    p = torch.zeros(t_len - 1, 3)  # dx, dy (pixels at full working size), s
    for level in (4, 2, 1):
        a, b = F.avg_pool2d(i0, level), F.avg_pool2d(i1, level)
        m = F.avg_pool2d(wgt, level).flatten(1) > 0.5
        hh, ww = a.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(hh).float(), torch.arange(ww).float(), indexing="ij")
        xy = torch.stack([xs.flatten(), ys.flatten()], -1)[None]  # (1, P, 2)
        rel = xy - torch.tensor([(ww - 1) / 2, (hh - 1) / 2])
        a_flat = a.flatten(1)
        for _ in range(iters):
            warped = xy + p[:, None, :2] / level + p[:, None, 2:3] * rel
            v = sample(b, warped)
            gx, gy = (sample(g, warped) for g in _gradients(b))
            jac = torch.stack([gx, gy, gx * rel[..., 0] + gy * rel[..., 1]], -1) * m[..., None]  # (N, P, 3)
            err = (a_flat - v) * m
            hess = jac.transpose(1, 2) @ jac + 1e-4 * torch.eye(3)
            delta = torch.linalg.solve(hess, (jac * err[..., None]).sum(1))
            delta[:, :2] *= level
            p = p + delta
    return (p / torch.tensor([w, w, 1.0])).numpy()


def corners(img: torch.Tensor, count: int, keep: torch.Tensor | None = None, border: int = 4) -> torch.Tensor:
    """Up to `count` Shi-Tomasi corners (P, 2) of one image (1, 1, H, W): local maxima of the smaller
    eigenvalue of the 5x5 structure tensor, strongest first, restricted to `keep` (1, 1, H, W)."""
    gx, gy = _gradients(img)
    sxx, syy, sxy = (F.avg_pool2d(v, 5, 1, 2) for v in (gx * gx, gy * gy, gx * gy))
    tr, det = sxx + syy, sxx * syy - sxy * sxy
    lam = tr / 2 - torch.sqrt((tr / 2) ** 2 - det).nan_to_num(0)
    peak = (lam == F.max_pool2d(lam, 5, 1, 2)) & (lam > max(1e-7, 0.02 * float(lam.max())))
    if keep is not None:
        peak &= keep
    peak[..., :border, :] = peak[..., -border:, :] = False
    peak[..., :, :border] = peak[..., :, -border:] = False
    ys, xs = torch.nonzero(peak[0, 0], as_tuple=True)
    order = lam[0, 0, ys, xs].argsort(descending=True)[:count]
    return torch.stack([xs[order], ys[order]], -1).float()


def track_points(
    frames: torch.Tensor, points: torch.Tensor, win: int = 9, iters: int = 8, max_error: float = 0.06
) -> tuple[np.ndarray, np.ndarray]:
    """Follow points (P, 2) from frame 0 through frames (T, 1, H, W) with pyramidal Lucas-Kanade.
    Returns (positions (T, P, 2) in pixels, alive (T, P) bool); a point dies when it leaves the image,
    its window loses texture, or its mean absolute patch error exceeds `max_error`."""
    t_len, _, h, w = frames.shape
    r = torch.arange(win).float() - (win - 1) / 2
    offs = torch.stack(torch.meshgrid(r, r, indexing="xy"), -1).reshape(-1, 2)  # (Q, 2)
    pos = torch.zeros(t_len, len(points), 2)
    alive = torch.zeros(t_len, len(points), dtype=torch.bool)
    pos[0], alive[0] = points, True
    for t in range(1, t_len):
        p0 = pos[t - 1]
        p = p0.clone()
        for level in (2, 1):
            a, b = F.avg_pool2d(frames[t - 1 : t], level), F.avg_pool2d(frames[t : t + 1], level)
            q0 = (p0[:, None] + offs * level) / level  # window at this level, (P, Q, 2)
            tpl = sample(a.expand(len(p0), -1, -1, -1), q0)
            gx, gy = (sample(g.expand(len(p0), -1, -1, -1), q0) for g in _gradients(a))
            g_mat = torch.stack(
                [
                    torch.stack([(gx * gx).sum(1), (gx * gy).sum(1)], -1),
                    torch.stack([(gx * gy).sum(1), (gy * gy).sum(1)], -1),
                ],
                -2,
            )
            g_mat = g_mat + 1e-6 * torch.eye(2)
            for _ in range(iters):
                q = (p[:, None] + offs * level) / level
                err = tpl - sample(b.expand(len(p0), -1, -1, -1), q)
                rhs = torch.stack([(gx * err).sum(1), (gy * err).sum(1)], -1)
                p = p + torch.linalg.solve(g_mat, rhs) * level
        q = p[:, None] + offs
        err = (
            (
                sample(frames[t - 1 : t].expand(len(p0), -1, -1, -1), p0[:, None] + offs)
                - sample(frames[t : t + 1].expand(len(p0), -1, -1, -1), q)
            )
            .abs()
            .mean(1)
        )
        inside = (p[:, 0] >= 1) & (p[:, 0] <= w - 2) & (p[:, 1] >= 1) & (p[:, 1] <= h - 2)
        pos[t], alive[t] = p, alive[t - 1] & inside & (err < max_error) & torch.isfinite(p).all(1)
    return pos.numpy(), alive.numpy()
