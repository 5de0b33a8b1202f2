"""What the benches that sample a model over an eval prompt set share: their arguments and the line that
says what ran where."""

from __future__ import annotations

import argparse
import platform
from datetime import date

import torch


def suite_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a bench over a prompt set: model, suite, sampling, device, limit."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--suite", default="quick", help="prompt set: quick, full or a .json")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    return ap


def ran(args: argparse.Namespace, prompts: int, device: str, seconds: float, what: str = "") -> str:
    """One line: which model on which prompts, sampled how, on which machine, when, in how long."""
    return (
        f"{args.model or 'the shipped model'} on the {args.suite} suite ({prompts} prompts){what}, "
        f"{args.steps} steps, seed {args.seed}, {device}, torch {torch.__version__}, {platform.node()}, "
        f"{date.today()}, {seconds:.0f} s"
    )
