"""The run folder: config, checkpoints (model + state, written atomically), resuming, stopping.

    RUN/train_config.json   the training config (with its trainer kind)
    RUN/model/              a model folder (`save_model`) with the EMA weights: the one to ship
    RUN/state/              training state (`save_state`): raw weights, EMA, optimizer, step, data
                            position, RNG states; tensors in safetensors, the rest in JSON
    RUN/metrics.jsonl       one JSON line per logged step
    RUN/tb/                 TensorBoard event files
    RUN/samples/            sample videos (mp4) and contact sheets (png)

A checkpoint writes `model/` and then `state/`, each by one atomic rename; `state/` decides where a
resumed run continues, so a crash between the two at worst leaves `model/` one checkpoint ahead.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tessera.checkpoint import CheckpointError, flatten, load_state, read_json, save_state, unflatten
from tessera.errors import FileError as RunError
from tessera.files import atomic_write_text
from tessera.train import distributed
from tessera.train.config import RESUMABLE, ConfigError, TrainConfig, build, config_class, to_json
from tessera.train.distributed import Dist
from tessera.train.state import EMA, rng_tensors, set_rng


def start(out: str | Path, cfg: TrainConfig, d: Dist) -> Path:
    """Create a fresh run folder and write the config. A folder with a checkpoint is refused; one with
    only a config (a run that stopped before its first checkpoint) is started over."""
    out = Path(out)
    if (out / "state").exists():
        raise RunError(
            f"{out} already holds a training run; continue it with --resume {out} or pick a new --out"
        )
    distributed.barrier(d)  # every rank checked before rank 0 writes
    if d.main:
        atomic_write_text(out / "train_config.json", to_json(cfg))
    return out


def resume_config(run: str | Path, kind: str, **overrides: Any) -> TrainConfig:
    """The config saved in `run`, with allowed overrides applied; clear errors for a missing, corrupt,
    mismatched or other-kind run folder."""
    run = Path(run)
    path = run / "train_config.json"
    if not run.is_dir():
        raise RunError(f"{run}: run folder not found (nothing to resume)")
    if not (run / "state").is_dir():
        raise RunError(f"{run}: no checkpoint in this run folder (missing {run / 'state'}); start a new run")
    saved = read_json(path, RunError)
    if saved.pop("kind", None) != kind:
        raise RunError(f"{run} is not a '{kind}' training run (its train_config.json says otherwise)")
    try:
        cfg = build(config_class(kind), saved)
    except (ConfigError, TypeError) as e:
        raise RunError(f"{path}: {e}") from e
    changes = {k: v for k, v in overrides.items() if v is not None and v != getattr(cfg, k, v)}
    if "preset" in changes:
        raise RunError(f"{run} was trained with preset '{cfg.preset}', not '{changes['preset']}'")
    fixed = sorted(set(changes) - RESUMABLE)
    if fixed:
        raise RunError(
            f"cannot change {fixed} when resuming {run} (it would not continue the same run); "
            f"only {sorted(RESUMABLE)} may change"
        )
    return build(config_class(kind), {**saved, **changes})


Optimizers = dict[str, tuple[nn.Module, torch.optim.Optimizer]]  # name -> (the module it steps, it)


def save_checkpoint(
    run: Path,
    d: Dist,
    modules: dict[str, nn.Module],
    ema: EMA,
    optimizers: Optimizers,
    meta: dict[str, Any],
    write_model: Callable[[], object],
) -> None:
    """Write `model/` (rank 0 calls `write_model()`) and then `state/` holding every module's
    raw state, the EMA, the optimizers, the RNG and `meta`. A collective under FSDP: call on all ranks."""
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        tensors |= {f"{name}.{k}": v for k, v in distributed.full_tensors(m.state_dict()).items()}
    ema_full = distributed.full_tensors(ema.tensors())
    tensors |= {f"ema.{k}": v for k, v in ema_full.items()}
    skeletons = {}
    for name, (owner, opt) in optimizers.items():
        skeletons[name] = flatten(distributed.optimizer_state(owner, opt, d), f"optim.{name}", tensors)
    if not d.main:
        return
    write_model()
    tensors |= rng_tensors()
    save_state(run / "state", tensors, {**meta, "ema_updates": ema.updates, "optimizers": skeletons})


def end_of_step(
    step: int, cfg: TrainConfig, stopping: bool, checkpoint: Callable[[], None], sample: Callable[[int], None]
) -> bool:
    """After step `step`: `sample(step)` and `checkpoint()` at their intervals, a checkpoint also on the
    last step and on a stop. Returns whether the loop ends here (on a stop)."""
    if cfg.sample_every and step % cfg.sample_every == 0:
        sample(step)
    if stopping or step == cfg.steps or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
        checkpoint()
    return stopping


def load_checkpoint(
    run: Path, d: Dist, modules: dict[str, nn.Module], ema: EMA, optimizers: Optimizers
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote (every rank reads the files); returns the meta dict."""
    try:
        tensors, meta = load_state(run / "state")
    except CheckpointError as e:
        raise RunError(f"{run}: cannot resume, the checkpoint is unreadable: {e}") from e
    try:
        for name, m in modules.items():
            distributed.load_module_state(m, _prefixed(tensors, f"{name}."))
        ema.load(_prefixed(tensors, "ema."), meta["ema_updates"])
        for name, (owner, opt) in optimizers.items():
            distributed.load_optimizer_state(owner, opt, unflatten(meta["optimizers"][name], tensors), d)
    except (KeyError, ValueError, RuntimeError) as e:
        raise RunError(f"{run}: checkpoint does not fit this model (another preset or config?): {e}") from e
    set_rng(tensors)
    return meta


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class StopFlag:
    """Set by SIGTERM / SIGINT (or a time limit): the trainer checkpoints and returns after this step."""

    def __init__(self, time_limit_min: float = 0.0) -> None:
        self.signalled = False
        self.deadline = time.monotonic() + 60 * time_limit_min if time_limit_min > 0 else None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals stay with their owner
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.signalled = True

    def should_stop(self) -> bool:
        """True once a signal arrived or the time limit passed."""
        return self.signalled or (self.deadline is not None and time.monotonic() > self.deadline)
