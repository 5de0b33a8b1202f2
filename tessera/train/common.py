"""Pieces both trainers share: the starting model, mixed precision, the optimizer step, and the
"ship" model (EMA weights, full tensors, on the CPU) that checkpoints save and samples use."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn

from tessera.checkpoint import (
    Model,
    build_model,
    load_model,
)
from tessera.config import get_preset
from tessera.folders import take_vae, train_tokenizer
from tessera.train import distributed
from tessera.train.config import TrainConfig
from tessera.train.distributed import Dist
from tessera.train.run import RunError
from tessera.train.state import EMA


def initial_model(cfg: TrainConfig, run: Path, resume: bool) -> Model:
    """The model a run starts from, on the CPU: the run's own `model/` when resuming (its raw weights
    come from the state afterwards), else `cfg.init`, else a fresh one (seeded; the tokenizer trained
    on world captions) whose VAE, for a DiT run with `vae_from`, is that folder's. The preset must match
    in every case."""
    if resume or cfg.init:
        path = run / "model" if resume else Path(cfg.init)
        try:
            model = load_model(path, "cpu")
        except ValueError as e:
            raise RunError(f"cannot start from {path}: {e}") from e
        if model.config.preset != cfg.preset:
            raise RunError(
                f"{path} holds a '{model.config.preset}' model but the run asks for preset '{cfg.preset}'; "
                f"pass --preset {model.config.preset}"
            )
        for m in model.modules().values():
            m.train().requires_grad_(True)
        return model

    config = get_preset(cfg.preset)
    tokenizer = train_tokenizer(config)
    torch.manual_seed(cfg.seed)
    model = build_model(config, tokenizer, "cpu")
    if getattr(cfg, "vae_from", ""):
        take_vae(model, Path(cfg.vae_from))
    return model


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA ("auto" or "bf16"); full fp32 otherwise."""
    use = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def optimizer_step(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grad_clip: float) -> float:
    """Clip the gradient norm (if `grad_clip` > 0), step, and return the norm before clipping."""
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    if distributed.is_sharded(norm):
        norm = norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def ship_model(model: Model, ema: EMA, d: Dist) -> Model | None:
    """A CPU copy of `model` with the EMA weights wherever there are some (EMA names are
    `<component>.<parameter>`, e.g. `dit.blocks.0.mlp.fc1.weight`). A collective under FSDP; returns the
    model on rank 0 and None elsewhere."""
    ema_full = distributed.full_tensors(ema.tensors())
    states = {name: distributed.full_tensors(m.state_dict()) for name, m in model.modules().items()}
    if not d.main:
        return None
    ship = build_model(model.config, model.tokenizer, "meta")
    for name, module in ship.modules().items():
        state = states[name] | {
            k[len(name) + 1 :]: v for k, v in ema_full.items() if k.startswith(name + ".")
        }
        module.load_state_dict(state, strict=True, assign=True)
    ship.card = model.card
    return ship.eval()


def card(kind: str, cfg: TrainConfig, step: int, device: torch.device, extra: str = "") -> str:
    """The model card written with a run's `model/` folder."""
    return (
        f"# tessera `{cfg.preset}` ({kind} trained by `tessera train {kind}`)\n\n"
        f"- steps: {step} of {cfg.steps}, global batch {cfg.batch_size}, shapes {cfg.shapes}\n"
        f"- data: {cfg.data}\n- device: {device}\n- weights: EMA (decay {cfg.ema_decay})\n{extra}"
    )


def finite(x: float, what: str, step: int) -> float:
    """`x`, or a clear error when training diverged."""
    if not math.isfinite(x):
        raise FloatingPointError(f"{what} is {x} at step {step}: training diverged (lower --lr?)")
    return x
