"""What `tessera train vae|dit` and `tessera train eval-vae` call: flags onto a training config, then
the trainer. Launch on several GPUs with `torchrun --nproc-per-node N -m tessera.cli train dit ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.train import distributed
from tessera.train.config import ConfigError, TrainConfig, make_config
from tessera.train.dit import train_dit
from tessera.train.run import RunError, resume_config
from tessera.train.vae import evaluate_vae, object_text, train_vae


def train_command(
    kind: str,
    out: str | Path | None = None,
    preset: str | None = None,
    data: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    **overrides: Any,
) -> dict:
    """Start a run in `out` (flags over `--config FILE` over defaults) or continue the run `resume`.

    Returns the trainer's summary ({"step", "losses"}). Only `RESUMABLE` fields may change on resume.
    """
    flags = {"preset": preset, "data": data, "steps": steps, "batch_size": batch_size, **overrides}
    if resume is not None:
        if out is not None and Path(out) != Path(resume):
            raise RunError(
                f"--out {out} and --resume {resume} differ; a resumed run continues in its own folder"
            )
        if config is not None:
            raise RunError("--config applies to new runs; a resumed run keeps its saved train_config.json")
        cfg: TrainConfig = resume_config(resume, kind, **flags)
        run = Path(resume)
    else:
        if out is None:
            raise ConfigError("give --out RUN for a new run (or --resume RUN to continue one)")
        cfg = make_config(kind, config, **flags)
        run = Path(out)
    trainer = _trainer(kind)
    try:
        return trainer(cfg, run, resume=resume is not None)
    finally:
        distributed.teardown()


def _trainer(kind: str):
    if kind == "vae":
        return train_vae

    return train_dit


def eval_vae_command(
    model: str | Path, clips: int = 16, shape: str = "17x128x128", device: str = "auto"
) -> str:
    """Reconstruction PSNR of a model folder's VAE on held-out world clips (whole, and on the pixels of
    their objects), as one line of text."""
    psnr = evaluate_vae(model, clips=clips, shape=shape, device=device)
    return (
        f"{model}: reconstruction PSNR {psnr['psnr']:.2f} dB on {clips} held-out world clips of {shape}"
        f"{object_text(psnr)}"
    )
