"""The training curve: JSON lines and TensorBoard events (process 0 only), and the progress display."""
from __future__ import annotations

import json
import sys

import tensorboardX
import tqdm

from jaxretrieval.run_directory import RunDirectory

__all__ = ["MetricWriter", "Progress"]


class MetricWriter:
    """``metrics.jsonl`` and TensorBoard events of a run; silent on every process but 0.

    A resumed run starts at ``start_step``: records of later steps (written before the interruption,
    and about to be recomputed) are dropped from ``metrics.jsonl`` so each step appears once.
    """

    def __init__(self, run: RunDirectory, *, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        if enabled:
            path = run.metrics_file
            if path.exists():
                kept = [line for line in path.read_text().splitlines() if _record_step(line) <= start_step]
                path.write_text("".join(line + "\n" for line in kept))
            self._jsonl = open(path, "a")
            self._tensorboard = tensorboardX.SummaryWriter(str(run.tensorboard_dir))

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{name: float(value) for name, value in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for name, value in values.items():
            self._tensorboard.add_scalar(name, float(value), int(step))
        self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # A line cut short by a kill: drop it.
        return 1 << 62


class Progress:
    """A tqdm bar on a terminal, plain log lines (throughput, ETA) otherwise."""

    def __init__(self, *, initial: int, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self._step = initial

    def update(self, step: int, summary: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(step - self._step)
            self._bar.set_postfix(loss=f"{summary.get('loss', float('nan')):.4f}",
                                  img_per_s=f"{summary.get('images_per_second', 0.0):.0f}")
        elif self.enabled:
            rate = summary.get("steps_per_second", 0.0)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(
                f"step {step}/{self.total}  loss {summary.get('loss', float('nan')):.4f}  "
                f"{summary.get('images_per_second', 0.0):.0f} images/s  ETA {eta:.0f} s",
                flush=True,
            )
        self._step = step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
