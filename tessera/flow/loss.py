"""The flow-matching path and loss, with a time per latent frame and a loss mask over frames.

Path: `x_t = (1 - t) x0 + t noise`, so `dx_t/dt = noise - x0 = v`, which the network predicts.
Each latent frame has its own t (B, T_z): given (conditioning) frames sit at t = 0 and carry no loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def frame_t(t: Tensor, x: Tensor) -> Tensor:
    """Broadcast per-frame times t (B, T_z) or per-sample times (B,) against x (B, C, T_z, H, W)."""
    if x.ndim != 5:
        raise ValueError(f"expected a latent video (B, C, T_z, H, W), got shape {tuple(x.shape)}")
    B, _, T_z = x.shape[:3]
    if t.ndim == 1:
        t = t[:, None].expand(-1, T_z)
    if tuple(t.shape) != (B, T_z):
        raise ValueError(f"t must have shape (B,) = ({B},) or (B, T_z) = ({B}, {T_z}), got {tuple(t.shape)}")
    return t[:, None, :, None, None].to(x.dtype)  # (B, 1, T_z, 1, 1)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The point on the path at time t: `x_t = (1 - t) x0 + t noise`, t per frame (B, T_z) or (B,)."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} must have the same shape")
    t = frame_t(t, x0)
    return (1 - t) * x0 + t * noise


def flow_loss(
    v_pred: Tensor,
    x0: Tensor,
    noise: Tensor,
    loss_mask: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Squared error between v_pred and the target `v = noise - x0`, per frame, over the frames where
    loss_mask (B, T_z) is set: every frame's error is its mean over (C, H, W), or with `weight`
    (B, T_z, H, W) its weighted mean over the cells (a frame still counts once; within it, heavier cells
    count more, e.g. the cells under an object).

    `reduction="mean"` averages over every loss frame of the batch, so each such frame weighs the same
    however the loss frames are spread (0, still attached to the graph, when none carries loss);
    `"sum"` returns the sum, for a trainer that divides by the loss frames of all ranks. `loss_mask=None`
    means every frame carries loss. Computed in float32 whatever the input dtype.
    """
    if not v_pred.shape == x0.shape == noise.shape:
        raise ValueError(
            f"v_pred {tuple(v_pred.shape)}, x0 {tuple(x0.shape)} and noise {tuple(noise.shape)} "
            "must have the same shape"
        )
    B, _, T_z = x0.shape[:3]
    if loss_mask is None:
        loss_mask = torch.ones(B, T_z, dtype=torch.bool, device=x0.device)
    if tuple(loss_mask.shape) != (B, T_z):
        raise ValueError(f"loss_mask must have shape (B, T_z) = ({B}, {T_z}), got {tuple(loss_mask.shape)}")
    sq = (v_pred.float() - (noise.float() - x0.float())).square()
    if weight is None:
        err = sq.mean(dim=(1, 3, 4))  # (B, T_z): mean over C, H, W
    else:
        err = (sq.mean(dim=1) * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    # where() rather than a product, so NaN/inf predicted at a masked frame cannot leak into the loss.
    keep = loss_mask.to(torch.bool)
    total = torch.where(keep, err, torch.zeros_like(err)).sum()
    return total if reduction == "sum" else total / keep.sum().clamp_min(1)
