"""A run's directory (``--workdir``): the one place that names its files and reads and writes them.

A training run leaves::

    <workdir>/
      config.json          the config it ran with (evaluate / encode / query read it back)
      summary.json         data set facts the model needs later: classes, image shape, split sizes
      splits.json          the protocol's query / train / database indices (re-used on resume)
      load_report.jsonl    images that could not be read, one JSON line each
      metrics.jsonl        the training curve, one JSON line per logged step
      tensorboard/         the same curve as TensorBoard events
      checkpoints/<step>/  orbax checkpoints (see :mod:`jaxretrieval.training.checkpoint`)
      eval/metrics.json    the evaluation's metrics, step and sizes
      eval/pr_curve.png    precision-recall curves
      eval/retrieval_grid.png  queries and their top results

Only process 0 writes the JSON files and figures; every process reads them.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ml_collections

__all__ = ["RunDirectory", "checkpoints_of"]

_CHECKPOINTS = "checkpoints"


class RunDirectory:
    """The files of one run, by name. ``RunDirectory(path)`` creates nothing until something is written."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path).absolute()

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # Names ----------------------------------------------------------------------------------------

    @property
    def config_file(self) -> pathlib.Path:
        return self.path / "config.json"

    @property
    def summary_file(self) -> pathlib.Path:
        return self.path / "summary.json"

    @property
    def splits_file(self) -> pathlib.Path:
        return self.path / "splits.json"

    @property
    def load_report_file(self) -> pathlib.Path:
        return self.path / "load_report.jsonl"

    @property
    def metrics_file(self) -> pathlib.Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        return self.path / "tensorboard"

    @property
    def checkpoints_dir(self) -> pathlib.Path:
        return self.path / _CHECKPOINTS

    @property
    def eval_dir(self) -> pathlib.Path:
        return self.path / "eval"

    @property
    def eval_metrics_file(self) -> pathlib.Path:
        return self.eval_dir / "metrics.json"

    @property
    def pr_curve_file(self) -> pathlib.Path:
        return self.eval_dir / "pr_curve.png"

    @property
    def retrieval_grid_file(self) -> pathlib.Path:
        return self.eval_dir / "retrieval_grid.png"

    # Reading and writing ---------------------------------------------------------------------------

    def create(self) -> RunDirectory:
        """Makes the directory (and its parents) if missing; returns itself."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        self.create()
        self.config_file.write_text(config.to_json_best_effort(indent=2))

    def read_config(self) -> ml_collections.ConfigDict:
        """The locked config the run saved (JSON turns tuples into lists; the readers accept both)."""
        values = self._read_json(self.config_file)
        config = ml_collections.ConfigDict(values)
        config.lock()
        return config

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.create()
        self.summary_file.write_text(json.dumps(summary, indent=2))

    def read_summary(self) -> dict[str, Any]:
        return self._read_json(self.summary_file)

    def write_eval_report(self, report: dict[str, Any]) -> None:
        self.eval_dir.mkdir(parents=True, exist_ok=True)
        self.eval_metrics_file.write_text(json.dumps(report, indent=2))

    def read_eval_report(self) -> dict[str, Any]:
        return self._read_json(self.eval_metrics_file)

    def _read_json(self, path: pathlib.Path) -> dict[str, Any]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {self.path} the workdir of a training run?")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}); the run directory is damaged") from error


def checkpoints_of(path: str | os.PathLike) -> pathlib.Path:
    """The checkpoints directory of ``path``: a run directory (``<path>/checkpoints``) or that directory itself."""
    path = pathlib.Path(path).absolute()
    if (path / _CHECKPOINTS).is_dir():
        return path / _CHECKPOINTS
    return path
