"""Training logs: a progress bar (loss, steps/s, tokens/s, ETA), `metrics.jsonl`, TensorBoard events,
and sample videos (mp4 + PNG contact sheet). Only rank 0 logs; the other ranks get a silent logger.

TensorBoard events go to `RUN/tb` through `torch.utils.tensorboard` (view with `tensorboard --logdir
RUN/tb`). A resumed run's writer hides the events an interrupted run logged after its checkpoint, as
`metrics.jsonl` drops their lines, so neither shows a step twice.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from tessera.video import contact_sheet, save_image, write_video


class Logger:
    """Logs steps [start, total) of a run in `run` (silent when `enabled` is False)."""

    def __init__(self, run: Path, start: int, total: int, enabled: bool, desc: str) -> None:
        self.run, self.enabled = Path(run), enabled
        self.bar = tqdm(total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True)
        self.tb = None
        if enabled:  # purge_step: TensorBoard hides what an interrupted run logged after `start`
            self.tb = SummaryWriter(str(self.run / "tb"), purge_step=start + 1 if start else None)
        self._last = (time.perf_counter(), start, 0.0)  # time, step and tokens at the last log
        self._tokens = 0.0
        if enabled:
            _truncate_metrics(self.run / "metrics.jsonl", start)

    def step(self, step: int, tokens: float, metrics: dict[str, float], write: bool) -> None:
        """Record step `step` (1-based count of steps done) processing `tokens` (latent patches for the
        DiT, pixels T*H*W for the VAE) over all ranks; write logs if `write`."""
        self._tokens += tokens
        if not self.enabled:
            return
        self.bar.update(1)
        if not write:
            return
        now = time.perf_counter()
        t0, s0, k0 = self._last
        dt = max(now - t0, 1e-9)
        rates = {"steps_per_s": (step - s0) / dt, "tokens_per_s": (self._tokens - k0) / dt}
        self._last = (now, step, self._tokens)
        row = {"step": step, **metrics, **rates, "time": time.time()}
        with open(self.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for tag, value in row.items():
            if tag not in ("step", "time"):
                self.tb.add_scalar(tag, value, step)
        self.tb.flush()  # a run killed later still has its curves up to here
        self.bar.set_postfix(
            loss=f"{metrics.get('loss', float('nan')):.4f}", it_s=f"{rates['steps_per_s']:.2f}",
            tok_s=f"{rates['tokens_per_s']:.3g}",
        )  # fmt: skip

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar and the event writer."""
        self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _truncate_metrics(path: Path, start: int) -> None:
    """Drop lines logged after step `start` by an interrupted run, so a resumed log has no repeats."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start]
    path.write_text("".join(line + "\n" for line in keep))


def read_metrics(run: str | Path) -> list[dict]:
    """All rows of `RUN/metrics.jsonl`."""
    path = Path(run) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def save_sample(folder: Path, name: str, frames, caption: str, fps: float = 16.0) -> list[Path]:
    """Write uint8 frames (T, H, W, 3) as `name.mp4` (when PyAV is available) and `name.png` (a contact
    sheet with the caption); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    out = [save_image(folder / f"{name}.png", contact_sheet(frames, columns=8, title=caption))]
    if frames.shape[0] > 1:
        try:
            out.append(write_video(folder / f"{name}.mp4", frames, fps=fps))
        except (ImportError, ValueError) as e:  # no PyAV on this machine: the sheet is enough
            warnings.warn(f"sample video not written ({e}); the contact sheet was", stacklevel=2)
    return out
