"""Make a model from nothing: VAE, DiT, pack, evaluation, in resumable chunks, counting the GPU minutes.

    python scripts/make_model.py --runs runs/make --out runs/make/model                  # 30 + 50 minutes
    python scripts/make_model.py --runs runs/make --out runs/make/model --max-minutes 9  # one chunk a call
    python scripts/make_model.py --runs runs/make --out runs/make/model --gpus 4        # data parallel

The recipe is two training configs (`--vae-config`, `--dit-config`, default `scripts/shipped/`) and a
budget of minutes for each (`--vae-minutes`, `--dit-minutes`; by default 30 and 50, so that with packing
and the quick evaluation the model costs at most about 90 GPU minutes). Each training chunk is one
`tessera train` process with `--time-limit-min` at most `--chunk-minutes`, so it checkpoints and stops
cleanly; the next chunk resumes it. The DiT run takes the VAE run's VAE (`--vae-from`), so the DiT's
preset may differ from the VAE's as long as both name the same VAE; `--vae FOLDER` takes a VAE made
before instead (a model folder, of which config.json and the VAE's weights suffice: a bf16 VAE of 17 MB
can travel where a run folder of 134 MB cannot) and skips the VAE stage. Then `tessera model
pack` writes the bf16 model folder `--out` and `tessera eval` scores it (`--suite`). What is done is read
from the run folders and a ledger (`RUNS/make.json`: each chunk's wall minutes), so the script can be
stopped at any point, or given `--max-minutes` per call, and called again to go on. It prints the minutes
each stage took, startup and compilation included, and the GPU minutes the model cost. `--gpus N` runs
each training chunk as N data-parallel processes on one machine (`torch.distributed.run`, one GPU each;
on a machine without GPUs, N CPU processes): the global batch and the steps stay the recipe's, so the
budgets are wall minutes and each of them costs N GPU minutes; packing and the evaluation run as one
process. See docs/design.md for the run folders' layout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tessera.files import atomic_write_text
from tessera.train.logger import read_metrics

STAGES = ("vae", "dit", "pack", "eval")
MIN_CHUNK = 0.25  # minutes: a budget left smaller than this is spent


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    ledger = read_ledger(runs)
    started = time.monotonic()
    for stage in STAGES:
        while not done(stage, args, ledger):
            elapsed = (time.monotonic() - started) / 60
            budget = chunk_minutes(stage, args, ledger)
            if args.max_minutes and elapsed + budget + 0.5 > args.max_minutes:
                print(table(ledger, f"stopped: the next {stage} chunk would pass --max-minutes; call again"))
                return 0
            run_chunk(stage, args, ledger, budget)  # writes the ledger
    print(table(ledger, f"done: {args.out}"))
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder of the runs and the ledger")
    ap.add_argument("--out", required=True, help="the packed model folder to write")
    ap.add_argument("--vae-config", default="scripts/shipped/vae.json")
    ap.add_argument("--dit-config", default="scripts/shipped/dit.json")
    ap.add_argument("--vae-flags", default="", help="more `tessera train vae` flags, e.g. '--preset g2-z32'")
    ap.add_argument("--dit-flags", default="", help="more `tessera train dit` flags")
    ap.add_argument(
        "--vae",
        default="",
        help="a VAE made before (a model folder; its config.json and VAE weights suffice): no VAE stage",
    )
    ap.add_argument("--vae-minutes", type=float, default=30.0, help="VAE training budget")
    ap.add_argument("--dit-minutes", type=float, default=50.0, help="DiT training budget")
    ap.add_argument("--chunk-minutes", type=float, default=8.0, help="training minutes per process")
    ap.add_argument("--gpus", type=int, default=1, help="data-parallel processes per training chunk")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop before passing this (0: no limit)")
    ap.add_argument("--suite", default="quick", help="`tessera eval` suite ('' skips the evaluation)")
    ap.add_argument("--eval-flags", default="--steps 25", help="more `tessera eval` flags")
    args = ap.parse_args(argv)
    for name in ("vae_minutes", "dit_minutes", "chunk_minutes"):
        if not getattr(args, name) > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    if args.gpus < 1:
        ap.error(f"--gpus must be a whole number >= 1; got {args.gpus}")
    for name in ("vae_config", "dit_config"):
        if not Path(getattr(args, name)).is_file():
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)}: no such config file")
    if args.vae and not (Path(args.vae) / "config.json").is_file():
        ap.error(f"--vae {args.vae}: not a model folder (no config.json)")
    return args


def read_ledger(runs: Path) -> dict:
    path = runs / "make.json"
    return json.loads(path.read_text()) if path.exists() else {s: [] for s in STAGES}


def spent(ledger: dict, stage: str) -> float:
    return sum(c["minutes"] for c in ledger[stage])


def gpu_minutes(ledger: dict, stage: str) -> float:
    """Wall minutes times the processes (GPUs) each chunk ran on; ledgers before `--gpus` ran on one."""
    return sum(c["minutes"] * c.get("gpus", 1) for c in ledger[stage])


def trained(run: Path) -> tuple[int, int]:
    """(steps done, steps configured) of a training run folder; (0, 1) before its first checkpoint."""
    rows = read_metrics(run)
    config = run / "train_config.json"
    steps = json.loads(config.read_text())["steps"] if config.exists() else 1
    return (rows[-1]["step"] if rows and (run / "state").exists() else 0), steps


def done(stage: str, args: argparse.Namespace, ledger: dict) -> bool:
    runs = Path(args.runs)
    if stage == "vae" and args.vae:
        return True
    if stage in ("vae", "dit"):
        step, steps = trained(runs / stage)
        left = getattr(args, f"{stage}_minutes") - spent(ledger, stage)
        return step >= steps or (left < MIN_CHUNK and (runs / stage / "model").exists())
    if stage == "pack":
        return (Path(args.out) / "config.json").exists()
    return not args.suite or (runs / "eval" / "results.json").exists()


def chunk_minutes(stage: str, args: argparse.Namespace, ledger: dict) -> float:
    """Training minutes for the next chunk of `stage` (an estimate of a few for pack and eval)."""
    if stage not in ("vae", "dit"):
        return 1.0
    left = getattr(args, f"{stage}_minutes") - spent(ledger, stage)
    return max(MIN_CHUNK, min(args.chunk_minutes, left))


def processes(stage: str, args: argparse.Namespace) -> int:
    """The processes (GPUs) a chunk of `stage` runs on: `--gpus` for training, one for pack and eval."""
    return args.gpus if stage in ("vae", "dit") else 1


def command(stage: str, args: argparse.Namespace, minutes: float) -> list[str]:
    runs, tessera = Path(args.runs), [sys.executable, "-m", "tessera.cli"]
    if processes(stage, args) > 1:  # one process per GPU, as `torchrun` starts them
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.gpus)]
        tessera = [sys.executable, *launch, "-m", "tessera.cli"]
    if stage in ("vae", "dit"):
        run, limit = runs / stage, ["--time-limit-min", f"{minutes:.2f}"]
        if (run / "state").exists():
            return [*tessera, "train", stage, "--resume", str(run), *limit]
        vae = args.vae or str(runs / "vae" / "model")  # the DiT's preset names the same VAE
        init = ["--vae-from", vae] if stage == "dit" else []
        flags = shlex.split(getattr(args, f"{stage}_flags"))
        config = getattr(args, f"{stage}_config")
        return [*tessera, "train", stage, "--out", str(run), "--config", config, *init, *limit, *flags]
    if stage == "pack":
        return [*tessera, "model", "pack", str(runs / "dit" / "model"), "--out", args.out, "--dtype", "bf16"]
    out = ["--out", str(runs / "eval")]
    return [*tessera, "eval", args.out, "--suite", args.suite, *out, *shlex.split(args.eval_flags)]


def run_chunk(stage: str, args: argparse.Namespace, ledger: dict, minutes: float) -> None:
    cmd = command(stage, args, minutes)
    print("+", shlex.join(cmd), flush=True)
    t0 = time.monotonic()
    result = subprocess.run(cmd)
    took = (time.monotonic() - t0) / 60
    gpus = processes(stage, args)
    chunk = {"minutes": round(took, 3), "gpus": gpus, "command": shlex.join(cmd[1:]), "rc": result.returncode}
    ledger[stage].append(chunk)
    atomic_write_text(Path(args.runs) / "make.json", json.dumps(ledger, indent=1))
    if result.returncode != 0:
        raise SystemExit(f"error: {stage} failed (exit {result.returncode}); fix it and call again to go on")


def table(ledger: dict, status: str) -> str:
    cells = [(s, len(ledger[s]), spent(ledger, s), gpu_minutes(ledger, s)) for s in STAGES]
    rows = [f"| {s} | {n} | {m:.1f} | {g:.1f} |" for s, n, m, g in cells]
    wall, gpu = (sum(f(ledger, s) for s in STAGES) for f in (spent, gpu_minutes))
    head = ["| stage | chunks | minutes | GPU minutes |", "|---|---|---|---|"]
    return "\n".join([*head, *rows, f"| all | | {wall:.1f} | {gpu:.1f} |", status])


if __name__ == "__main__":
    sys.exit(main())
