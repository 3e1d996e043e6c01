"""The trainer: ``train_and_evaluate(config, workdir)``, called by ``python -m jaxretrieval.train``.

1. builds the method (:func:`jaxretrieval.methods.build_method`), the data
   (:func:`jaxretrieval.data.build_retrieval_data`), the mesh (``config.mesh``), the optax optimiser
   and the initial :class:`~jaxretrieval.training.state.TrainState` (parameters replicated);
2. resumes, in this order, from the latest checkpoint in the run directory, else
   ``config.resume_from`` (a run directory or checkpoints directory: state and data position), else
   ``config.init_checkpoint`` (model variables only), else starts from scratch;
3. runs the pure step (:mod:`jaxretrieval.training.step`) under ``jax.jit`` with the state donated;
   the data iterator's position is part of every checkpoint, so a resumed run ends with exactly the
   parameters of an uninterrupted one;
4. logs JSON lines and TensorBoard events (process 0), stops with the step and the metric's name
   when a metric is NaN/Inf, saves every ``config.checkpoint_every_steps`` steps, at the end, and on
   SIGTERM (pre-emption);
5. fits what the method fits after training (``method.finalize``), then evaluates
   (:func:`jaxretrieval.evaluation.evaluate_run`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxretrieval import data as data_lib
from jaxretrieval import sharding
from jaxretrieval.evaluation import Encoder, EvaluationSettings, evaluate_run
from jaxretrieval.methods import Method, build_method
from jaxretrieval.run_directory import RunDirectory, checkpoints_of
from jaxretrieval.training.checkpoint import Checkpoints, abstract_like
from jaxretrieval.training.metric_writer import MetricWriter, Progress
from jaxretrieval.training.optimizer import build_optimizer
from jaxretrieval.training.preemption import PreemptionSignal
from jaxretrieval.training.state import ModelDefinition, TrainState, abstract_variables, initial_state, root_key
from jaxretrieval.training.step import make_train_step

__all__ = ["NonFiniteMetricError", "TrainResult", "train_and_evaluate"]


class NonFiniteMetricError(FloatingPointError):
    """A training metric became NaN or Inf; the message names the step and the metric."""


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_and_evaluate` returns: the final state and the evaluation metrics (if run)."""

    state: TrainState
    eval_metrics: dict[str, float] | None
    preempted: bool = False


def _announce(message: str) -> None:
    """A line for the user, printed by process 0 only."""
    if sharding.is_main_process():
        print(message, flush=True)


def _total_steps(config, steps_per_epoch: int) -> int:
    if config.num_steps > 0:
        return int(config.num_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _write_run_files(run: RunDirectory, config, data) -> None:
    run.write_config(config)
    run.write_summary({
        "method": config.method,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "num_train": len(data.train),
        "num_query": len(data.query),
        "num_database": len(data.database),
        "data_report": data.report.summary(),
    })


def _restore(config, checkpoints: Checkpoints, state: TrainState, data_iterator) -> TrainState:
    """Auto-resume order: this run directory, ``resume_from``, ``init_checkpoint`` (model only), scratch."""
    abstract = abstract_like(state)
    if checkpoints.latest_step() is not None:
        _announce(f"resuming from {checkpoints.directory} step {checkpoints.latest_step()}")
        return checkpoints.restore(abstract, data_iterator)
    if config.resume_from:
        source = Checkpoints(checkpoints_of(config.resume_from), read_only=True)
        _announce(f"resuming from config.resume_from={source.directory} step {source.latest_step()}")
        return source.restore(abstract, data_iterator)
    if config.init_checkpoint:
        source = Checkpoints(checkpoints_of(config.init_checkpoint), read_only=True)
        _announce(f"initialising the model from config.init_checkpoint={source.directory}")
        model_part = source.restore_subtree({"params": abstract.params, "model_state": abstract.model_state})
        return state.replace(params=model_part["params"], model_state=model_part["model_state"])
    return state


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise NonFiniteMetricError(
                f"training stopped at step {step}: metric {name!r} is {value} (NaN/Inf guard); "
                "lower the learning rate or check the inputs"
            )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> TrainResult:
    """Trains ``config`` in ``workdir`` (resuming whatever is there), then evaluates; see the module doc."""
    run = RunDirectory(workdir).create()
    method = build_method(config)
    data = data_lib.build_retrieval_data(config.data, splits_file=run.splits_file, load_report_file=run.load_report_file)
    if sharding.is_main_process():
        _write_run_files(run, config, data)
    mesh = sharding.make_mesh([tuple(pair) for pair in config.mesh])
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"config.batch_size={config.batch_size} exceeds the {len(data.train)} training examples")
    total_steps = _total_steps(config, steps_per_epoch)

    with jax.set_mesh(mesh):
        abstract = abstract_variables(config)
        tx, schedule = build_optimizer(config, abstract.params, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        definition = abstract.definition
        state = initial_state(config, method, definition, num_classes=data.num_classes, mesh=mesh, tx=tx)
        train_step = jax.jit(
            make_train_step(method, definition, tx, schedule, micro_batch_size=config.micro_batch_size),
            donate_argnums=(0,),
        )
        batches = data_lib.train_batches(
            data.train, global_batch_size=config.batch_size, seed=config.seed,
            worker_count=config.data.worker_count, prefetch=config.data.prefetch,
        )
        checkpoints = Checkpoints(run.checkpoints_dir, max_to_keep=config.keep_checkpoints)
        state = _restore(config, checkpoints, state, batches)
        state, preempted = _train_loop(config, train_step, state, batches, checkpoints, mesh, run, total_steps)
        if not preempted and checkpoints.latest_step() != total_steps:
            if method.finalize is not None:
                state = _finalize(config, method, definition, state, data, mesh)
            checkpoints.save(total_steps, state, batches)
        checkpoints.wait()
        checkpoints.close()
        eval_metrics = None
        if config.evaluate_at_end and not preempted:
            eval_metrics = evaluate_run(
                method, definition.eval_model(state.params, state.model_state), data, mesh=mesh,
                settings=EvaluationSettings.from_config(config), step=int(sharding.to_host(state.step)), run=run,
            )
    return TrainResult(state=state, eval_metrics=eval_metrics, preempted=preempted)


def _finalize(config, method: Method, definition: ModelDefinition, state: TrainState, data, mesh) -> TrainState:
    """Fits what the method learns after training (mAP_Q's whitening) into the model state."""
    encoder = Encoder(method, definition.eval_model(state.params, state.model_state), mesh,
                      batch_size=config.eval_batch_size)
    representations = encoder.encode(data.train).representations
    # Writable host copies: finalize assigns into the model's variables.
    model = definition.eval_model(*sharding.to_host((state.params, state.model_state)))
    method.finalize(model, representations)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return state.replace(model_state=sharding.replicate(model_state, mesh))


def _train_loop(config, train_step, state, batches: Iterator, checkpoints, mesh, run, total_steps):
    is_main = sharding.is_main_process()
    base_key = sharding.replicate(jax.random.fold_in(root_key(config), 1), mesh)
    step = int(sharding.to_host(state.step))
    writer = MetricWriter(run, enabled=is_main, start_step=step)
    progress = Progress(initial=step, total=total_steps, enabled=is_main)
    accumulated: dict[str, list[float]] = {}
    window_start, window_steps = time.perf_counter(), 0
    pending = None  # The previous step's metrics, read after the next step is dispatched (keeps the device busy).
    preempted = False

    def consume(pending_step, pending_metrics):
        nonlocal window_start, window_steps
        values = {name: float(value) for name, value in sharding.to_host(pending_metrics).items()}
        _check_finite(pending_step, values)
        for name, value in values.items():
            accumulated.setdefault(name, []).append(value)
        window_steps += 1
        if pending_step % config.log_every_steps == 0 or pending_step == total_steps:
            elapsed = time.perf_counter() - window_start
            summary = {name: float(np.mean(series)) for name, series in accumulated.items()}
            summary["steps_per_second"] = window_steps / elapsed
            summary["images_per_second"] = window_steps * config.batch_size / elapsed
            writer.write(pending_step, summary)
            progress.update(pending_step, summary)
            accumulated.clear()
            window_start, window_steps = time.perf_counter(), 0

    try:
        with PreemptionSignal() as preemption:
            while step < total_steps:
                batch = sharding.global_batch(next(batches), mesh)
                state, metrics = train_step(state, {"image": batch["image"], "label": batch["label"]}, base_key)
                step += 1
                if pending is not None:
                    consume(*pending)
                pending = (step, metrics)
                if step % config.checkpoint_every_steps == 0 and step < total_steps:
                    checkpoints.save(step, state, batches)
                if preemption.should_stop(step, config.log_every_steps):
                    consume(*pending)
                    pending = None
                    checkpoints.save(step, state, batches)
                    _announce(f"SIGTERM: stopped at step {step}; checkpoint saved in {checkpoints.directory}")
                    preempted = True
                    break
            if pending is not None:
                consume(*pending)
    finally:
        progress.close()
        writer.close()
    return state, preempted
