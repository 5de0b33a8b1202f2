"""The world benchmark: metrics grounded in the world engine's truth, a scene parser, suites, reports.

    from tessera.eval import eval_command
    eval_command(model=None, suite="quick", out=Path("eval/truth"), truth=True)   # the ceiling

Modules: prompts (fixed prompt sets), tracks (parse structure, oracle parser), parser / parser_train (the
learned scene parser), motion (global motion, KLT), alignment, geometry, temporal, fwd, recon,
capability (the metrics), corrupt (broken clips for tests), suite and report.
"""

from __future__ import annotations

from tessera.eval.results import EvalError
from tessera.eval.suite import eval_command, run_suite

__all__ = ["EvalError", "eval_command", "run_suite"]
