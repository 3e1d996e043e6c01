r"""The reproduction study: run the comparisons on real CIFAR-10, then render docs/results.md.

Run from the repository root (each comparison gives every method the same backbone, input size,
batch and steps; the run definitions are in ``studies/study_configs.py``)::

    nice .venv/bin/python -m studies.reproduce --study supervised --bits 16,32,64 --protocol I,II \
        --seeds 0,1 --budget cpu20 --data-root /path/to/cifar10 --out runs/study
    nice .venv/bin/python -m studies.reproduce --study unsupervised --bits 16,32,64 --protocol II ...
    nice .venv/bin/python -m studies.reproduce --study listwise --bits 64 --protocol II ...
    .venv/bin/python -m studies.reproduce --report --out runs/study --doc docs/results.md

Each run trains through ``jaxretrieval.training.trainer.train_and_evaluate`` in ``<out>/<run name>/``
(resumed from its checkpoints when interrupted), or, for LSH / PCA-ITQ, fits the hash on pixels or on
the comparison's backbone with its initial (untrained) weights. Then the run is evaluated once here:
the method's own retrieval rule and metrics (``jaxretrieval.evaluation``: mAP over all for protocol
I, mAP@1000 for II, precision@1000, precision within Hamming radius 2, tie-aware mAP), and for the
listwise study also the real-valued (cosine) mAP over all and mAP@1000 of both methods. One JSON line
per run goes to ``<out>/results.jsonl`` with the training time, the hardware and the command; a run
already there is skipped (delete its line to rerun it). ``--report`` turns those lines into the tables
(mean and sample standard deviation over seeds), precision-recall curves and retrieval grids of the
doc's generated section (between the two ``GENERATED`` markers; the rest of the doc is left as it is).

``--tiny`` is the smoke size for the test suite: a symlinked subset of the image folders (16 train and
4 test images per class) in ``<out>/tiny_data`` resized to 8 px, a 2-step budget and small widths; its records are
labelled ``tiny-<budget>`` and the report marks them as smoke runs, never as results.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess
import threading
import time

import flax
import jax
import numpy as np
from flax import nnx

from jaxretrieval import classic_hashing, models
from jaxretrieval.data import Subset, build_retrieval_data, eval_batches
from jaxretrieval.evaluation import (
    Encoded,
    Encoder,
    EvaluationSettings,
    evaluate_encoded,
    host_model,
    plots,
    retrieval_grid,
    score_index,
)
from jaxretrieval.index import FlatIndex, HammingIndex
from jaxretrieval.methods import InputTransform
from jaxretrieval.run_directory import RunDirectory
from jaxretrieval.training.restore import restore_trained_model
from jaxretrieval.training.trainer import train_and_evaluate
from studies import study_configs

RESULTS_FILENAME = "results.jsonl"
STUDY_EVAL_FILENAME = "study_eval.npz"
STEP_TIMES_FILENAME = "step_times.jsonl"
GENERATED_BEGIN = "<!-- GENERATED RESULTS BEGIN (python -m studies.reproduce --report) -->"
GENERATED_END = "<!-- GENERATED RESULTS END -->"
GRID_QUERIES = 3
GRID_RESULTS = 8
# The rendered report's commands name no machine's folder: the records keep the real one.
DATA_ROOT_PLACEHOLDER = "/path/to/cifar10"


# ---------------------------------------------------------------------------------------------------
# Environment


def hardware() -> dict:
    """What the run ran on: device kind and count, CPU count, load, library versions, git commit."""
    devices = jax.devices()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=study_configs.REPO_ROOT,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                check=True, cwd=study_configs.REPO_ROOT,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", True
    # A copy of the tree shipped elsewhere (e.g. to a GPU machine) may carry no .git or a stale one: the
    # shipper names the commit it sent, which wins.
    if os.environ.get("JAXRETRIEVAL_GIT_COMMIT"):
        commit, dirty = os.environ["JAXRETRIEVAL_GIT_COMMIT"], False
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "git_commit": commit + ("+local changes" if dirty else ""),
    }


def hardware_label(record: dict) -> str:
    """E.g. ``"cpu x1 (2 cores, load 9.8)"`` or ``"NVIDIA H100 x1"``."""
    machine = record["hardware"]
    if machine["platform"] == "cpu":
        return f"CPU, {machine['cpu_count']} cores, load {machine['load_average_1min']}"
    return f"{machine['device_kind']} x{machine['num_devices']}"


def make_tiny_image_folder(data_root: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """A symlinked subset of ``data_root/{train,test}/<class>/`` (no image is copied); its root.

    The first :data:`study_configs.TINY_IMAGES_PER_CLASS` files (by name) of every class and split.
    """
    data_root, tiny_root = pathlib.Path(data_root).absolute(), pathlib.Path(out) / "tiny_data"
    for split, count in study_configs.TINY_IMAGES_PER_CLASS.items():
        split_dir = data_root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"--data-root {data_root} has no {split}/ folder (expected <root>/{split}/<class>/*.jpg)")
        for class_dir in sorted(path for path in split_dir.iterdir() if path.is_dir()):
            target_dir = tiny_root / split / class_dir.name
            target_dir.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[:count]:
                link = target_dir / image.name
                if not link.exists():
                    link.symlink_to(image)
    return tiny_root


def study_command(*, study, bits, protocols, seeds, budget, data_root, out, tiny, methods=None) -> str:
    """The ``python -m studies.reproduce`` command line that runs these settings (``methods``: the
    ``--methods`` filter)."""
    parts = [
        "python", "-m", "studies.reproduce", "--study", study,
        "--bits", ",".join(str(value) for value in bits),
        "--protocol", ",".join(protocols),
        "--seeds", ",".join(str(value) for value in seeds),
        "--budget", budget, "--data-root", str(data_root), "--out", str(out),
    ]
    if methods:
        parts += ["--methods", ",".join(methods)]
    return " ".join(shlex.quote(part) for part in parts + (["--tiny"] if tiny else []))


# ---------------------------------------------------------------------------------------------------
# Evaluation (shared by trained and classic runs)


def _save_study_eval(path: pathlib.Path, curves: dict, top_indices, query: Encoded, database: Encoded, data) -> None:
    """The run's precision-recall ``curves`` (name -> (recall, precision)) and the retrieval grid of
    its first queries' top results (``top_indices``), with their images: what the report draws."""
    arrays = {}
    for position, (recall, precision) in enumerate(curves.values()):
        arrays[f"recall_{position}"] = np.asarray(recall, np.float64)
        arrays[f"precision_{position}"] = np.asarray(precision, np.float64)
    grid = retrieval_grid(
        query, database, top_indices, data.query.source, data.database.source,
        num_queries=GRID_QUERIES, num_results=GRID_RESULTS,
    )
    np.savez_compressed(
        path, curve_names=np.asarray(list(curves)), query_images=grid.query_images,
        result_images=grid.result_images, correct=grid.correct, query_rows=grid.rows, **arrays,
    )


def _listwise_metrics(spec, evaluation, query: Encoded, database: Encoded, settings: EvaluationSettings) -> dict:
    """Listwise study: cosine metrics of both methods, and the sign codes' Hamming metrics as ``binary_*``.

    ``cosine_mAP`` and ``cosine_precision@k`` rank the whole database, ``cosine_mAP@k`` (when the
    protocol cuts at ``settings.top_k``) its top ``k``.
    """
    representations = (query.representations, database.representations)
    if spec.method == "triplet":
        # The triplet loss compares tanh(logits); rank those real values.
        representations = tuple(np.tanh(values) for values in representations)
    dimension = representations[0].shape[1]
    results = {}
    for top_k in sorted({0, int(settings.top_k)}):
        scored = score_index(
            FlatIndex(dimension, metric="cosine"), *representations, query.labels, database.labels,
            dataclasses.replace(settings, top_k=top_k), prefix="cosine_",
        )
        results.update(scored.metrics)
    for name, value in evaluation.metrics.items():
        if spec.method == "map_q" and name.startswith("binary_"):
            results[name] = value
        elif spec.method == "triplet":
            results["binary_" + name] = value
    return results


# ---------------------------------------------------------------------------------------------------
# Runs


def run_trained(spec, workdir: pathlib.Path) -> dict:
    """Trains ``spec.config`` in ``workdir`` (resuming), then evaluates it; the record's measured part."""
    run = RunDirectory(workdir)
    resumed = run.checkpoints_dir.is_dir()
    start = time.perf_counter()
    train_and_evaluate(spec.config, workdir)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    trained = restore_trained_model(workdir)
    if trained.step != int(spec.config.num_steps):
        # The trainer stops early (after a checkpoint) on SIGTERM, e.g. from `timeout`: such a model is
        # not the budget's, and must never be evaluated as if it were (rerun to resume it).
        raise RuntimeError(
            f"{spec.name}: training stopped at step {trained.step} of {spec.config.num_steps} (interrupted?); "
            "not evaluated, not recorded; rerun the same command to resume it"
        )
    data = build_retrieval_data(trained.config.data, splits_file=run.splits_file, load_report_file=run.load_report_file)
    settings = EvaluationSettings.from_config(trained.config)
    encoder = Encoder(trained.method, trained.model, trained.mesh, batch_size=settings.batch_size)
    query = encoder.encode(data.query)
    database = encoder.encode(data.database)
    evaluation = evaluate_encoded(trained.method, host_model(trained.model), query, database, settings)
    metrics = dict(evaluation.metrics)
    if spec.study == "listwise":
        metrics = _listwise_metrics(spec, evaluation, query, database, settings)
    # One curve is named after the run; several keep the evaluation's names (method and index).
    curves = dict(evaluation.pr_curves)
    if len(curves) == 1:
        curves = {spec.label: curves.popitem()[1]}
    _save_study_eval(workdir / STUDY_EVAL_FILENAME, curves, evaluation.top_indices, query, database, data)
    return {
        "metrics": metrics,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "seconds_per_step": _seconds_per_step(run),
        "resumed": resumed,
        "num_queries": len(query.indices),
        "num_database": len(database.indices),
    }


def _seconds_per_step(run: RunDirectory) -> float | None:
    """Median step time from the trainer's training-curve windows, the first (compilation) left out."""
    if not run.metrics_file.exists():
        return None
    lines = run.metrics_file.read_text().splitlines()
    rates = [json.loads(line).get("steps_per_second") for line in lines if line.strip()]
    rates = [rate for rate in rates[1:] or rates if rate]
    return float(1.0 / np.median(rates)) if rates else None


def _encode_features(spec, subset: Subset, feature_fn) -> Encoded:
    """``feature_fn`` over every example of ``subset`` (host batches, one process)."""
    features, labels, indices = [], [], []
    for batch in eval_batches(subset, global_batch_size=int(spec.config.eval_batch_size), shard_index=0, shard_count=1):
        mask = np.asarray(batch["mask"], bool)
        features.append(np.asarray(feature_fn(batch["image"]))[mask])
        labels.append(batch["label"][mask])
        indices.append(batch["index"][mask])
    return Encoded(np.concatenate(features), np.concatenate(labels), np.concatenate(indices))


def _feature_fn(spec):
    """Pixels in [0, 1], or the comparison's backbone at its initial weights, average-pooled."""
    config = spec.config
    inputs = InputTransform.from_config(config.augment)
    if spec.features == "pixels":
        return lambda images: inputs.model_input(images).reshape(len(images), -1)
    model_key = jax.random.key(spec.seed)
    model = models.build_model(config.model, rngs=nnx.Rngs(params=model_key, dropout=model_key))
    model.eval()
    graphdef, state = nnx.split(model.backbone)

    @jax.jit
    def backbone_features(images):
        feature_map = nnx.merge(graphdef, state)(inputs.model_input(images))
        return feature_map.mean(axis=(1, 2))

    return backbone_features


def run_classic(spec, workdir: pathlib.Path) -> dict:
    """Fits LSH or PCA-ITQ on the training split's features (at most 10,000 of them) and evaluates."""
    run = RunDirectory(workdir).create()
    start = time.perf_counter()
    data = build_retrieval_data(spec.config.data, splits_file=run.splits_file, load_report_file=run.load_report_file)
    feature_fn = _feature_fn(spec)
    fit_key, draw_key = jax.random.split(jax.random.key(spec.seed))
    train_rows = np.sort(np.asarray(jax.random.permutation(draw_key, len(data.train)))[:10_000])
    fit_subset = Subset(data.train.source, data.train.indices[train_rows])
    train_features = _encode_features(spec, fit_subset, feature_fn).representations
    if spec.method == "lsh":
        linear_hash = classic_hashing.lsh_fit(
            fit_key, train_features.shape[1], spec.num_bits, center=train_features.mean(axis=0)
        )
    else:
        linear_hash = classic_hashing.itq_fit(train_features, spec.num_bits, key=fit_key)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    project = jax.jit(linear_hash.project)
    query, database = (
        _encode_features(spec, subset, lambda images: project(feature_fn(images))) for subset in (data.query, data.database)
    )
    # The hash's real projections, binarised and ranked by the index (the hash methods' rule).
    evaluation = score_index(
        HammingIndex(spec.num_bits), query.representations, database.representations, query.labels,
        database.labels, EvaluationSettings.from_config(spec.config),
    )
    _save_study_eval(
        workdir / STUDY_EVAL_FILENAME, {spec.label: evaluation.pr_curve}, evaluation.top_indices, query, database, data
    )
    return {
        "metrics": dict(evaluation.metrics),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "seconds_per_step": None,
        "resumed": False,
        "num_queries": len(query.indices),
        "num_database": len(database.indices),
        "num_fit_examples": len(train_features),
    }


class _StepClock:
    """Samples the process's CPU time (user + system, all threads) each time the trainer logs a step.

    CPU seconds per step barely depend on other processes sharing the machine, unlike wall time; on
    an idle machine with ``c`` cores a step's wall time lies between ``cpu / c`` (perfectly
    parallel) and ``cpu`` (one thread).
    """

    def __init__(self, metrics_path: pathlib.Path):
        self.samples: list[tuple[int, float, float]] = []  # (step, cpu seconds, wall seconds)
        self._path, self._stop = metrics_path, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        seen = 0
        while not self._stop.wait(0.2):
            text = self._path.read_text() if self._path.exists() else ""
            lines = text[: text.rfind("\n") + 1].splitlines()  # whole lines only: the trainer may be writing
            if len(lines) > seen:
                cpu, wall = sum(os.times()[:2]), time.perf_counter()
                self.samples.extend((json.loads(line)["step"], cpu, wall) for line in lines[seen:])
                seen = len(lines)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def per_step(self) -> tuple[float | None, float | None]:
        """(CPU seconds, wall seconds) per step from the first logged step (compilation done) to the last."""
        if len(self.samples) < 2:
            return None, None
        (first_step, first_cpu, first_wall), (last_step, last_cpu, last_wall) = self.samples[0], self.samples[-1]
        steps = last_step - first_step
        return (last_cpu - first_cpu) / steps, (last_wall - first_wall) / steps


def measure_step_times(args) -> list[dict]:
    """Trains each trained method of the study (first bits / protocol / seed) for ``--measure-steps``
    steps of the budget, without evaluation, and appends CPU and wall seconds per step (after the
    first logged step, which holds the compilation) to ``<out>/step_times.jsonl``.

    The step time depends on the model and batch, not on the data set's size, so ``--data-root`` may
    be any image folder of the same image size with at least one batch of training images.
    """
    out = pathlib.Path(args.out) / "step_times"
    runs = study_configs.study_runs(
        args.study, bits=args.bits[:1], protocols=args.protocol[:1], seeds=args.seeds[:1], budget=args.budget,
        data_root=args.data_root, methods=args.methods,
    )
    machine = hardware()
    measured = []
    for spec in (run for run in runs if run.kind == "trained"):
        config = spec.config.copy_and_resolve_references()
        config.unlock()
        config.num_steps = int(args.measure_steps)
        config.log_every_steps = max(1, args.measure_steps // 4)
        config.checkpoint_every_steps = 10 * config.num_steps
        config.schedule.warmup_steps = 0
        workdir = out / spec.name
        start = time.perf_counter()
        with _StepClock(RunDirectory(workdir).metrics_file) as clock:
            train_and_evaluate(config, workdir)
            time.sleep(0.5)  # let the watcher see the last line
        cpu_per_step, wall_per_step = clock.per_step()
        record = {
            "name": spec.name, "method": spec.method, "batch_size": int(config.batch_size),
            "backbone": config.model.backbone, "steps": config.num_steps,
            "cpu_seconds_per_step": cpu_per_step, "wall_seconds_per_step": wall_per_step,
            "total_wall_seconds": time.perf_counter() - start,
            "hardware": machine, "load_average_1min_after": round(os.getloadavg()[0], 2),
        }
        with open(pathlib.Path(args.out) / STEP_TIMES_FILENAME, "a") as times_file:
            times_file.write(json.dumps(record) + "\n")
        print(f"{spec.name}: {cpu_per_step:.3f} CPU s/step, {wall_per_step:.3f} wall s/step at batch "
              f"{record['batch_size']} (load {record['load_average_1min_after']})", flush=True)
        measured.append(record)
    return measured


def read_records(out: str | os.PathLike) -> list[dict]:
    path = pathlib.Path(out) / RESULTS_FILENAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_all_records(outs) -> list[dict]:
    """The records of several ``--out`` directories; each keeps the directory it was read from (``_read_from``)."""
    records = []
    for out in outs:
        for record in read_records(out):
            record["_read_from"] = str(out)
            records.append(record)
    counts = collections.Counter((record["name"], _platform_label(record)) for record in records)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"runs recorded twice on the same hardware across {list(outs)}: {duplicates}")
    return records


def run_study(args) -> list[dict]:
    """Runs every run of the arguments not yet in ``<out>/results.jsonl``; returns the new records."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = str(make_tiny_image_folder(args.data_root, out)) if args.tiny else args.data_root
    runs = study_configs.study_runs(
        args.study, bits=args.bits, protocols=args.protocol, seeds=args.seeds, budget=args.budget,
        data_root=data_root, tiny=args.tiny, methods=args.methods,
    )
    recorded = {record["name"]: record for record in read_records(out)}
    machine = hardware()
    new_records = []
    for spec in runs:
        workdir = out / spec.name
        if args.reevaluate:
            record = reevaluate_run(spec, workdir, recorded.get(spec.name), machine, out)
            if record is not None:
                new_records.append(record)
            continue
        if spec.name in recorded:
            print(f"{spec.name}: already in {out / RESULTS_FILENAME}, skipped (delete its line to rerun)", flush=True)
            continue
        print(f"{spec.name}: running", flush=True)
        measured = run_classic(spec, workdir) if spec.kind == "classic" else run_trained(spec, workdir)
        record = {
            "name": spec.name,
            "study": spec.study,
            "method": spec.method,
            "features": spec.features,
            "label": spec.label,
            "num_bits": spec.num_bits,
            "protocol": spec.protocol,
            "seed": spec.seed,
            "budget": spec.budget,
            "tiny": bool(args.tiny),
            "backbone": spec.config.model.backbone,
            "batch_size": int(spec.config.batch_size),
            "num_steps": int(spec.config.num_steps) if spec.kind == "trained" else 0,
            **measured,
            "hardware": machine,
            "workdir": str(workdir),
            "data_root": str(args.data_root),
            "out": str(args.out),
            "command": study_command(
                study=spec.study, bits=[spec.num_bits], protocols=[spec.protocol], seeds=[spec.seed],
                budget=args.budget, data_root=args.data_root, out=args.out, tiny=args.tiny, methods=args.methods,
            ),
            "methods_filter": args.methods,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with open(out / RESULTS_FILENAME, "a") as results_file:
            results_file.write(json.dumps(record) + "\n")
        summary = "  ".join(f"{name} {value:.4f}" for name, value in record["metrics"].items())
        print(f"{spec.name}: {summary}  (train {record['train_seconds']:.0f} s)", flush=True)
        new_records.append(record)
    return new_records


def _refresh_splits(spec, workdir: pathlib.Path) -> None:
    """Lets a re-evaluation take the current protocol code's splits (the database order among them).

    Ranking ties go by database position, so the database order is part of the evaluation. The query,
    training and database *sets* must be those the model was trained and evaluated with; if they
    differ, this raises instead of scoring the model on another split.
    """
    path = RunDirectory(workdir).splits_file
    stored = json.loads(path.read_text())
    fresh = build_retrieval_data(spec.config.data)
    for name in ("query", "train", "database"):
        if sorted(stored[name]) != sorted(getattr(fresh, name).indices.tolist()):
            raise ValueError(f"{path}: the {name} set differs from the current protocol's; not re-evaluated")
    path.unlink()  # the evaluation below writes the current splits again


def _replace_record(out: pathlib.Path, record: dict) -> None:
    """Rewrites ``<out>/results.jsonl`` with ``record`` in place of the line of the same run name."""
    lines = [record if old["name"] == record["name"] else old for old in read_records(out)]
    temporary = out / (RESULTS_FILENAME + ".tmp")
    temporary.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.replace(temporary, out / RESULTS_FILENAME)


def reevaluate_run(spec, workdir: pathlib.Path, record: dict | None, machine: dict, out: pathlib.Path):
    """Scores a recorded, finished trained run again with the current evaluation code (no training).

    The record keeps its training fields and gets the new metrics, evaluation time and a
    ``reevaluated`` entry (when, on what, at which commit). Returns the new record, or ``None`` when the
    run is not recorded yet.
    """
    if record is None:
        print(f"{spec.name}: not in {out / RESULTS_FILENAME}; nothing to re-evaluate (run it first)", flush=True)
        return None
    if spec.kind != "trained":
        raise ValueError(f"{spec.name}: classic hashes are refitted, not re-evaluated: delete its line and rerun it")
    print(f"{spec.name}: re-evaluating", flush=True)
    _refresh_splits(spec, workdir)
    measured = run_trained(spec, workdir)
    new_record = dict(
        record, metrics=measured["metrics"], eval_seconds=measured["eval_seconds"],
        reevaluated={"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hardware": machine,
                     "previous_metrics": record["metrics"]},
    )
    _replace_record(out, new_record)
    summary = "  ".join(f"{name} {value:.4f}" for name, value in new_record["metrics"].items())
    print(f"{spec.name}: {summary}  (re-evaluated)", flush=True)
    return new_record


# ---------------------------------------------------------------------------------------------------
# Report


# Column order of the tables; "@k" stands for any cut-off, binarised ("binary_") metrics come last.
_METRIC_ORDER = (
    "mAP@k", "mAP", "cosine_mAP@k", "cosine_mAP", "precision@k", "cosine_precision@k",
    "precision_within_radius_k", "tie_aware_mAP", "tie_aware_mAP@k",
)


def _metric_columns(records) -> list[str]:
    names = {name for record in records for name in record["metrics"]}

    def order(name):
        base = re.sub(r"(@|_radius_)\d+$", r"\1k", name.removeprefix("binary_"))
        rank = _METRIC_ORDER.index(base) if base in _METRIC_ORDER else len(_METRIC_ORDER)
        return (name.startswith("binary_"), rank, name)

    return sorted(names, key=order)


def mean_and_spread(values) -> str:
    """``"0.512 ± 0.010 (n=2)"``: mean and sample standard deviation over seeds (n=1: no spread)."""
    values = np.asarray(values, np.float64)
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f} (n={len(values)})"


def _method_order(record) -> tuple:
    # The proposed method first, then its baselines (csq, pairwise, triplet; spq, lsh, itq; map_q, triplet).
    methods = ("csq", "pairwise", "spq", "map_q", "triplet", *study_configs.CLASSIC_METHODS)
    return (record["num_bits"], methods.index(record["method"]) if record["method"] in methods else 99, record["label"])


def _table(records) -> list[str]:
    columns = _metric_columns(records)
    header = ["bits", "method", *columns, "train time (s)", "hardware"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[tuple, list[dict]] = {}
    for record in sorted(records, key=_method_order):
        groups.setdefault((record["num_bits"], record["label"]), []).append(record)
    for (num_bits, label), group in groups.items():
        cells = [str(num_bits), label]
        for column in columns:
            values = [record["metrics"][column] for record in group if column in record["metrics"]]
            cells.append(mean_and_spread(values) if values else "n/a")
        cells.append(f"{np.mean([record['train_seconds'] for record in group]):.0f}")
        cells.append("; ".join(sorted({hardware_label(record) for record in group})))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _figures(records, out: pathlib.Path, figure_dir: pathlib.Path, stem: str, doc_dir: pathlib.Path) -> list[str]:
    """PR curves and a retrieval grid (first seed of each method) for one bits setting; markdown lines.

    Each run's saved evaluation is read from ``<out>/<run name>/`` (so runs made on another machine
    and copied into ``out`` with their results lines work too).
    """
    first_seed = min(record["seed"] for record in records)
    runs = [record for record in sorted(records, key=_method_order) if record["seed"] == first_seed]
    curves, query_images, result_images, correct, titles = {}, [], [], [], []
    for record in runs:
        path = pathlib.Path(record.get("_read_from", out)) / record["name"] / STUDY_EVAL_FILENAME
        if not path.exists():
            continue
        with np.load(path) as saved:
            for position, name in enumerate(saved["curve_names"].tolist()):
                curves[name] = (saved[f"recall_{position}"], saved[f"precision_{position}"])
            query_images.append(saved["query_images"])
            result_images.append(saved["result_images"])
            correct.append(saved["correct"])
            titles.append(record["label"])
    if not curves:
        return ["(figures missing: the runs' study_eval.npz files are not in their workdirs)"]
    pr_path = plots.plot_precision_recall(curves, figure_dir / f"{stem}_pr.png")
    # Rows: every query with each method's top results under it, methods in table order.
    order = [(query, method) for query in range(len(query_images[0])) for method in range(len(titles))]
    grid_path = plots.plot_retrieval_grid(
        np.stack([query_images[method][query] for query, method in order]),
        np.stack([result_images[method][query] for query, method in order]),
        np.stack([correct[method][query] for query, method in order]),
        figure_dir / f"{stem}_grid.png",
        titles=[titles[method] for _, method in order],
    )
    relative = [os.path.relpath(path, doc_dir) for path in (pr_path, grid_path)]
    return [
        f"![precision-recall, {stem}]({relative[0]}) ![retrieval grid, {stem}]({relative[1]})",
        "",
        f"Figures: seed {first_seed}; the grid shows {len(query_images[0])} queries (first column) and each "
        "method's top results, framed green when they share the query's class.",
    ]


def render_report(records: list[dict], out: pathlib.Path, doc_dir: pathlib.Path) -> str:
    """The generated markdown: one section per (study, protocol, budget), tables then figures."""
    figure_dir = doc_dir / "results"
    if not records:
        return "No run recorded yet: **NOT YET RUN**.\n"
    lines = []
    sections: dict[tuple, list[dict]] = {}
    for record in records:
        key = (record["study"], record["protocol"], record["budget"], _platform_label(record))
        sections.setdefault(key, []).append(record)
    for (study, protocol, budget, platform_label), section in sorted(sections.items()):
        lines.append(f"### {study}, protocol {protocol}, budget {budget}, on {platform_label}")
        lines.append("")
        if any(record["tiny"] for record in section):
            lines.append("**TINY SMOKE RUN (a few steps on a few hundred images): not a result, checks only that "
                         "the pipeline runs.**")
            lines.append("")
        lines.extend(_table(section))
        lines.append("")
        bits = sorted({record["num_bits"] for record in section})
        seeds = sorted({record["seed"] for record in section})
        first = section[0]
        command = study_command(
            study=study, bits=bits, protocols=[protocol], seeds=seeds, budget=budget.removeprefix("tiny-"),
            data_root=DATA_ROOT_PLACEHOLDER, out=first["out"], tiny=first["tiny"], methods=_methods_filter(section),
        )
        lines.append(f"Command: `{command}`")
        lines.append("")
        reevaluated = sorted({record["reevaluated"]["utc"][:10] for record in section if "reevaluated" in record})
        if reevaluated:
            lines.append(
                f"Some runs were scored again after the evaluation code changed ({', '.join(reevaluated)}; their "
                "`results.jsonl` records keep the earlier metrics under `reevaluated`), with the same command plus "
                f"`--reevaluate`: `{command} --reevaluate`."
            )
            lines.append("")
        trained = [record for record in section if record["num_steps"]]
        setting = (
            f"Backbone {trained[0]['backbone']}, batch {trained[0]['batch_size']}, {trained[0]['num_steps']} steps for "
            "every trained method"
            if trained else "Classic hashes only (fitted, not trained)"
        )
        lines.append(
            f"{setting}; mean ± sample standard deviation over seeds (n = number of seeds); train time includes "
            "data loading and compilation (classic hashes: data loading, feature extraction and fitting)."
        )
        lines.append("")
        for num_bits in bits:
            present = {record["label"] for record in section if record["num_bits"] == num_bits}
            missing = [label for label in _expected_labels(study) if label not in present]
            if missing:
                elsewhere = {
                    label: sorted({_platform_label(record) for record in records if record["label"] == label
                                   and record["num_bits"] == num_bits and (record["study"], record["protocol"],
                                   record["budget"]) == (study, protocol, budget)})
                    for label in missing
                }
                described = [f"{label} (run on {', '.join(elsewhere[label])} only)" if elsewhere[label] else label
                             for label in missing]
                lines.append(f"**NOT YET RUN** on {platform_label} at {num_bits} bits: {', '.join(described)}.")
                lines.append("")
        for num_bits in bits:
            hardware_stem = "" if platform_label == "CPU" else "_" + re.sub(r"[^A-Za-z0-9]+", "_", platform_label).strip("_")
            stem = f"{study}_{protocol}_{budget}{hardware_stem}_{num_bits}b"
            bits_records = [record for record in section if record["num_bits"] == num_bits]
            lines.extend(_figures(bits_records, out, figure_dir, stem, doc_dir))
            lines.append("")
    not_run = [study for study in study_configs.STUDIES if study not in {record["study"] for record in records}]
    if not_run:
        lines.append(f"Studies with no run recorded: {', '.join(not_run)}: **NOT YET RUN**.")
    return "\n".join(lines) + "\n"


def _platform_label(record) -> str:
    """``"CPU"`` or the accelerator's kind: runs of one budget on different hardware get their own tables."""
    machine = record["hardware"]
    return "CPU" if machine["platform"] == "cpu" else machine["device_kind"]


def _methods_filter(records) -> list[str] | None:
    """The union of the records' ``--methods`` filters; None when any record ran unfiltered."""
    filters = [record.get("methods_filter") for record in records]
    if any(not methods for methods in filters):
        return None
    return sorted({method for methods in filters for method in methods})


def _expected_labels(study: str) -> list[str]:
    """The table labels of a complete comparison of ``study``."""
    if study == "unsupervised":
        classic = [f"{method} ({features})" for method in study_configs.CLASSIC_METHODS for features in study_configs.CLASSIC_FEATURES]
        return ["spq", *classic]
    return list(study_configs.SUPERVISED_METHODS if study == "supervised" else study_configs.LISTWISE_METHODS)


def write_report(outs, doc: str | os.PathLike) -> pathlib.Path:
    """Replaces the generated section of ``doc`` (appending markers if it has none) from the records of
    ``outs`` (one ``--out`` directory or a list of them)."""
    outs = [outs] if isinstance(outs, (str, os.PathLike)) else list(outs)
    doc = pathlib.Path(doc)
    generated = render_report(read_all_records(outs), pathlib.Path(outs[0]), doc.parent)
    text = doc.read_text() if doc.exists() else ""
    if GENERATED_BEGIN in text and GENERATED_END in text:
        before, rest = text.split(GENERATED_BEGIN, 1)
        after = rest.split(GENERATED_END, 1)[1]
    else:
        before, after = text + ("\n" if text else ""), "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(before + GENERATED_BEGIN + "\n\n" + generated + "\n" + GENERATED_END + after)
    return doc


def archive_records(out: str | os.PathLike, archive: str | os.PathLike) -> pathlib.Path:
    """Copies what ``--report`` reads from ``out`` into ``archive``: the records and each run's saved
    evaluation (``study_eval.npz``), not the checkpoints, so the folder is small enough to commit and
    ``--report --out ARCHIVE`` renders the same doc on any later checkout.

    Runs already in the archive stay; a run recorded in both with different contents is an error.
    """
    out, archive = pathlib.Path(out), pathlib.Path(archive)
    records = read_records(out)
    if not records:
        raise ValueError(f"{out / RESULTS_FILENAME}: no records to archive")
    kept = {record["name"]: record for record in read_records(archive)}
    for record in records:
        if kept.get(record["name"], record) != record:
            raise ValueError(f"{record['name']} is in {archive} with other contents; not overwritten")
        kept[record["name"]] = record
        evaluation = out / record["name"] / STUDY_EVAL_FILENAME
        if evaluation.exists():
            (archive / record["name"]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(evaluation, archive / record["name"] / STUDY_EVAL_FILENAME)
    archive.mkdir(parents=True, exist_ok=True)
    (archive / RESULTS_FILENAME).write_text("".join(json.dumps(record) + "\n" for record in kept.values()))
    return archive


# ---------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    return [int(value) for value in text.split(",") if value.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m studies.reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", choices=study_configs.STUDIES)
    parser.add_argument("--bits", type=_int_list, default=list(study_configs.BITS))
    parser.add_argument("--protocol", type=lambda text: text.split(","), default=["II"])
    parser.add_argument("--seeds", type=_int_list, default=[0, 1])
    parser.add_argument("--methods", type=lambda text: text.split(","), default=None,
                        help="only these methods of the study (e.g. csq or lsh,itq)")
    parser.add_argument("--budget", default="cpu20", choices=[name for name in study_configs.BUDGETS if name != "tiny"])
    parser.add_argument("--data-root", help="the CIFAR-10 image folder, <root>/{train,test}/<class>/*.jpg "
                        "(required to run a study)")
    parser.add_argument("--out", default="runs/study", help="with --report: one or more directories, comma-separated")
    parser.add_argument("--tiny", action="store_true", help="smoke size for tests (not a result)")
    parser.add_argument("--report", action="store_true", help="render --doc from <out>/results.jsonl and stop")
    parser.add_argument("--doc", default=str(study_configs.REPO_ROOT / "docs" / "results.md"))
    parser.add_argument("--archive", default=None,
                        help="copy the records and saved evaluations of --out into this folder (to commit) and stop")
    parser.add_argument("--reevaluate", action="store_true",
                        help="score the recorded runs of the arguments again (no training) with the current code")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    parser.add_argument("--measure-steps", type=int, default=0,
                        help="measure seconds per training step over this many steps (no evaluation) and stop")
    args = parser.parse_args(argv)
    if not args.report and not args.archive and args.study is None:
        parser.error("--study is required (or --report, or --archive)")
    if not args.report and not args.archive and args.data_root is None:
        parser.error("--data-root is required to run a study: the CIFAR-10 image folder "
                     "(<root>/{train,test}/<class>/*.jpg), e.g. --data-root /path/to/cifar10")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        print(f"wrote {write_report(args.out.split(','), args.doc)}")
        return
    if args.archive:
        print(f"archived {args.out} into {archive_records(args.out, args.archive)}")
        return
    if args.dry_run:
        for spec in study_configs.study_runs(
            args.study, bits=args.bits, protocols=args.protocol, seeds=args.seeds, budget=args.budget,
            data_root=args.data_root, tiny=args.tiny, methods=args.methods,
        ):
            print(spec.name)
        return
    if args.measure_steps:
        measure_step_times(args)
        return
    run_study(args)


if __name__ == "__main__":
    main()
