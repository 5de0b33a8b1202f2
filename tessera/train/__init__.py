"""Training: one file per trainer (`vae.py`, `dit.py`), read top to bottom.

Shared pieces: `config.py` (the training configs), `run.py` (run folders, checkpoints, resume, stop),
`state.py` (LR schedule, EMA, seeds, RNG), `distributed.py` (DDP / FSDP2 wrapping in one function),
`tasks.py` (conditioning frames), `logger.py` (progress, metrics.jsonl, TensorBoard),
`common.py`, and `commands.py` (what the CLI calls).
"""
