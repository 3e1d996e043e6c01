"""The trainer: a pure, jitted train step over a pytree state, checkpointed and resumable.

``train_and_evaluate(config, workdir)`` (called by ``python -m jaxretrieval.train``):

1. builds the data (:func:`jaxretrieval.data.build_retrieval_data`), the mesh (``config.mesh``), the
   model (:func:`jaxretrieval.models.build_model`), the method's extras (hash centers) and the optax
   optimiser into a :class:`TrainState` (parameters replicated over the mesh);
2. resumes, in this order, from the latest checkpoint in ``<workdir>/checkpoints``, else
   ``config.resume_from`` (a workdir or checkpoints directory: state and data position), else
   ``config.init_checkpoint`` (model variables only), else starts from scratch;
3. runs ``train_step(state, batch, key) -> (state, metrics)`` under ``jax.jit`` with the state donated;
   the step's randomness is ``jax.random.fold_in(key, step)``, and the data iterator's position is part
   of every checkpoint, so a resumed run ends with exactly the parameters of an uninterrupted one;
4. logs JSON lines to ``<workdir>/metrics.jsonl`` and TensorBoard events (process 0 only), stops with
   the step and the metric's name when a metric is NaN/Inf, saves every
   ``config.checkpoint_every_steps`` steps, at the end, and on SIGTERM (pre-emption);
5. evaluates (:func:`jaxretrieval.evaluate.evaluate_run`) and prints the mAP.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.struct
import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxretrieval import checkpoint as checkpoint_lib
from jaxretrieval import config_utils
from jaxretrieval import data as data_lib
from jaxretrieval import methods as methods_lib
from jaxretrieval import models as models_lib
from jaxretrieval import multistage
from jaxretrieval import sharding

__all__ = [
    "NonFiniteMetricError",
    "TrainResult",
    "TrainState",
    "build_optimizer",
    "learning_rate_schedule",
    "replicated_to_host",
    "restore_trained_model",
    "train_and_evaluate",
]

METRICS_FILENAME = "metrics.jsonl"
SUMMARY_FILENAME = "summary.json"


class NonFiniteMetricError(FloatingPointError):
    """A training metric became NaN or Inf; the message names the step and the metric."""


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree (checkpointed whole).

    Attributes:
      step: int32 scalar, the number of steps taken.
      params: the model's trainable ``nnx.Param`` variables (an ``nnx.State``).
      model_state: the model's other variables (BatchNorm statistics, the dropout rng stream,
        PCA-whitening), an ``nnx.State``.
      opt_state: the optax optimiser state.
      extras: the method's arrays kept beside the model (CSQ: ``centers``, ``tie_breaker``).
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    extras: dict[str, jax.Array]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_and_evaluate` returns: the final state and the evaluation metrics (if run)."""

    state: TrainState
    eval_metrics: dict[str, float] | None
    preempted: bool = False


# ---------------------------------------------------------------------------------------------------
# Optimiser and schedule


def learning_rate_schedule(config: ml_collections.ConfigDict, *, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """``config.schedule`` as an optax schedule over steps.

    ``name``: ``"constant"``; ``"step"`` (multiply by ``decay_factor`` every ``decay_every_epochs``
    epochs, as CSQ's x0.7 every 10 epochs); ``"cosine"`` (to ``end_factor`` x the peak at the last
    step). ``warmup_steps > 0`` prepends a linear warm-up from 0.
    """
    peak = config.optimizer.learning_rate
    schedule_config = config.schedule
    warmup_steps = int(schedule_config.warmup_steps)
    if schedule_config.name == "constant":
        main = optax.constant_schedule(peak)
    elif schedule_config.name == "step":
        transition_steps = max(1, round(schedule_config.decay_every_epochs * steps_per_epoch))
        main = optax.exponential_decay(
            peak, transition_steps=transition_steps, decay_rate=schedule_config.decay_factor, staircase=True
        )
    elif schedule_config.name == "cosine":
        main = optax.cosine_decay_schedule(
            peak, decay_steps=max(1, total_steps - warmup_steps), alpha=schedule_config.end_factor
        )
    else:
        raise ValueError(f"config.schedule.name must be 'constant', 'step' or 'cosine', got {schedule_config.name!r}")
    if warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, transition_steps=warmup_steps)
    return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def _base_optimizer(optimizer_config, learning_rate: optax.Schedule) -> optax.GradientTransformation:
    name = optimizer_config.name
    weight_decay = optimizer_config.weight_decay
    if name == "adam":
        # torch.optim.Adam's weight_decay (what CSQ and SPQ use) is an L2 term added to the gradient.
        adam = optax.adam(learning_rate, b1=optimizer_config.b1, b2=optimizer_config.b2, eps=optimizer_config.eps)
        return optax.chain(optax.add_decayed_weights(weight_decay), adam) if weight_decay else adam
    if name == "adamw":
        return optax.adamw(
            learning_rate,
            b1=optimizer_config.b1,
            b2=optimizer_config.b2,
            eps=optimizer_config.eps,
            weight_decay=weight_decay,
        )
    if name == "sgd":
        sgd = optax.sgd(learning_rate, momentum=optimizer_config.momentum or None, nesterov=optimizer_config.nesterov)
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd) if weight_decay else sgd
    if name == "rmsprop":
        rmsprop = optax.rmsprop(
            learning_rate,
            decay=optimizer_config.rmsprop_decay,
            eps=optimizer_config.eps,
            momentum=optimizer_config.momentum or None,
            nesterov=optimizer_config.nesterov,
        )
        return optax.chain(optax.add_decayed_weights(weight_decay), rmsprop) if weight_decay else rmsprop
    raise ValueError(f"config.optimizer.name must be one of adam, adamw, sgd, rmsprop, got {name!r}")


def _path_names(path) -> tuple:
    """A jax key path as plain names/ints, e.g. ``("backbone", "stage0", "kernel")``."""
    names = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                names.append(getattr(entry, attribute))
                break
    return tuple(names)


def build_optimizer(
    config: ml_collections.ConfigDict, params: Any, *, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax transformation of ``config.optimizer`` / ``config.schedule`` and its schedule.

    Backbone parameters (``jaxretrieval.models.is_backbone_path``) get their updates scaled by
    ``config.optimizer.backbone_multiplier``: for these optimisers that is exactly a learning rate
    multiplied by it (CSQ trains the backbone at x0.01-0.05 of the head's rate).
    ``grad_clip_norm > 0`` clips the global gradient norm first.
    """
    schedule = learning_rate_schedule(config, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    parts = []
    if config.optimizer.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.optimizer.grad_clip_norm))
    parts.append(_base_optimizer(config.optimizer, schedule))
    multiplier = config.optimizer.backbone_multiplier
    if multiplier != 1.0:
        labels = jax.tree_util.tree_map_with_path(
            lambda path, _: "backbone" if models_lib.is_backbone_path(_path_names(path)) else "head", params
        )
        parts.append(optax.multi_transform({"backbone": optax.scale(multiplier), "head": optax.identity()}, labels))
    return optax.chain(*parts), schedule


# ---------------------------------------------------------------------------------------------------
# State


def _root_key(config) -> jax.Array:
    return jax.random.key(config.seed, impl=config.rng_impl)


def _model_rngs(key: jax.Array) -> nnx.Rngs:
    params_key, dropout_key = jax.random.split(key)
    return nnx.Rngs(params=params_key, dropout=dropout_key)


def _scratch_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config.model`` without the pretrained path: pretrained weights are loaded after jitted init."""
    model_config = config.model.copy_and_resolve_references()
    model_config.pretrained_path = ""
    return model_config


def _host_copy(value) -> np.ndarray:
    """A writable numpy copy of a replicated value (also of a multi-process one: any local shard is whole)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        value = value.addressable_data(0)
    return np.array(value)


def replicated_to_host(tree: Any) -> Any:
    """Replicated arrays -> host numpy (PRNG keys stay keys), on one process or several."""

    def to_host(value):
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(_host_copy(jax.random.key_data(value)), impl=jax.random.key_impl(value))
        return _host_copy(value)

    return jax.tree.map(to_host, tree)


def _replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Host values (identical on every process) -> arrays replicated over the mesh."""
    replicated = sharding.replicated_sharding(mesh)

    def place(value):
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            placed = jax.make_array_from_process_local_data(replicated, _host_copy(jax.random.key_data(value)))
            return jax.random.wrap_key_data(placed, impl=jax.random.key_impl(value))
        return jax.make_array_from_process_local_data(replicated, _host_copy(value))

    return jax.tree.map(place, tree)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """The static parts of a run: graph definitions, optimiser and the initial state."""

    train_graphdef: Any
    eval_graphdef: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    state: TrainState


def _graphdefs(model_config, key):
    abstract_model = nnx.eval_shape(lambda: models_lib.build_model(model_config, rngs=_model_rngs(key)))
    abstract_model.eval()
    eval_graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    abstract_model.train()
    train_graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    return train_graphdef, eval_graphdef


def _initial_state(
    config, method, *, num_classes, mesh, steps_per_epoch, total_steps, load_pretrained: bool = True
) -> _Setup:
    root_key = _root_key(config)
    model_key, extras_key = jax.random.split(root_key)
    model_config = _scratch_model_config(config)
    train_graphdef, eval_graphdef = _graphdefs(model_config, model_key)
    replicated = sharding.replicated_sharding(mesh)

    @functools.partial(jax.jit, out_shardings=replicated)
    def init_model(key):
        model = models_lib.build_model(model_config, rngs=_model_rngs(key))
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        return params, model_state

    params, model_state = init_model(model_key)
    if config.model.pretrained_path and load_pretrained:
        model = nnx.merge(train_graphdef, params, model_state)
        models_lib.load_pretrained(model, config.model.pretrained_path)
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        params, model_state = _replicate((params, model_state), mesh)
    tx, schedule = build_optimizer(config, params, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
    extras = _replicate(method.init_extras(config, num_classes, extras_key), mesh)
    state = TrainState(
        step=_replicate(np.int32(0), mesh), params=params, model_state=model_state, opt_state=opt_state, extras=extras
    )
    return _Setup(train_graphdef, eval_graphdef, tx, schedule, state)


def _check_method_and_model(config, method) -> None:
    if config.model.head != method.head:
        raise ValueError(
            f"config.method={config.method!r} trains a {method.head!r} head but config.model.head={config.model.head!r}"
        )
    if config.micro_batch_size > 0 and method.listwise_loss is None:
        raise ValueError(
            f"config.micro_batch_size={config.micro_batch_size} (multistage backprop) is for listwise methods; "
            f"{config.method!r} has no listwise loss: set it to 0"
        )


# ---------------------------------------------------------------------------------------------------
# The step


def make_train_step(config, method, setup: _Setup) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """The pure step ``(state, batch, key) -> (state, metrics)``; jit it with the state donated."""
    train_graphdef, eval_graphdef, tx, schedule = setup.train_graphdef, setup.eval_graphdef, setup.tx, setup.schedule
    micro_batched = config.micro_batch_size > 0

    def plain_value_and_grad(state, batch, loss_key, dropout_key):
        # Reseeding mutates the model, so it happens here, outside the differentiated function.
        seeded = nnx.merge(train_graphdef, state.params, state.model_state)
        nnx.reseed(seeded, dropout=dropout_key)
        _, _, seeded_model_state = nnx.split(seeded, nnx.Param, ...)

        def loss_fn(params):
            model = nnx.merge(train_graphdef, params, seeded_model_state, copy=True)
            loss, metrics = method.loss(model, batch, state.extras, loss_key, config)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, model_state)

        (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return loss, metrics, model_state, grads

    def multistage_value_and_grad(state, batch, loss_key, dropout_key):
        # Multistage backprop embeds micro-batches independently: BatchNorm frozen (eval mode), no dropout.
        del dropout_key

        def embed(params, images):
            return nnx.merge(eval_graphdef, params, state.model_state)(images)

        value_and_grad = multistage.micro_batched_value_and_grad(
            embed,
            lambda descriptors, labels: method.listwise_loss(descriptors, labels, config),
            micro_batch_size=config.micro_batch_size,
        )
        images = methods_lib.input_views(loss_key, batch["image"], config)
        loss, grads = value_and_grad(state.params, images, batch["label"])
        return loss, {"loss": loss}, state.model_state, grads

    value_and_grad = multistage_value_and_grad if micro_batched else plain_value_and_grad

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        loss_key, dropout_key = jax.random.split(jax.random.fold_in(key, state.step))
        _, metrics, model_state, grads = value_and_grad(state, batch, loss_key, dropout_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, learning_rate=schedule(state.step), grad_norm=optax.tree.norm(grads))
        new_state = state.replace(
            step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
        )
        return new_state, metrics

    return train_step


# ---------------------------------------------------------------------------------------------------
# Logging


def _import_tensorboardx():
    """tensorboardX (TensorBoard files without TensorFlow), without the optional torch import.

    tensorboardX imports torch when installed only to accept torch tensors, which we never pass;
    that import costs seconds per run, so it is masked while tensorboardX loads.
    """
    if "torch" in sys.modules:
        import tensorboardX

        return tensorboardX
    sys.modules["torch"] = None  # Makes `import torch` raise ImportError, which tensorboardX handles.
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


class MetricWriter:
    """JSON lines (``metrics.jsonl``) and TensorBoard events; silent on every process but 0.

    A resumed run starts at ``start_step``: records of later steps (written before the interruption,
    and about to be recomputed) are dropped from ``metrics.jsonl`` so each step appears once.
    """

    def __init__(self, workdir: pathlib.Path, *, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        if enabled:
            path = workdir / METRICS_FILENAME
            if path.exists():
                kept = [line for line in path.read_text().splitlines() if _record_step(line) <= start_step]
                path.write_text("".join(line + "\n" for line in kept))
            tensorboardX = _import_tensorboardx()

            self._jsonl = open(workdir / METRICS_FILENAME, "a")
            self._tensorboard = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))

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


class _Progress:
    """A tqdm bar on a terminal, plain log lines (throughput, ETA) otherwise."""

    def __init__(self, *, initial: int, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            import tqdm

            self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
        self._step = initial

    def update(self, step: int, summary: dict[str, float], *, log_line: bool) -> None:
        if self._bar is not None:
            self._bar.update(step - self._step)
            self._bar.set_postfix(loss=f"{summary.get('loss', float('nan')):.4f}",
                                  img_per_s=f"{summary.get('images_per_second', 0.0):.0f}")
        elif self.enabled and log_line:
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


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise NonFiniteMetricError(
                f"training stopped at step {step}: metric {name!r} is {value} (NaN/Inf guard); "
                "lower the learning rate or check the inputs"
            )


class _PreemptionSignal:
    """Records a SIGTERM (pre-emption) so the loop can checkpoint and stop at the next step."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # Not the main thread (e.g. called from a worker thread): no handler.
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int, check_every_steps: int) -> bool:
        """True when any process got the signal; every process must stop at the same step.

        One process checks its flag every step; several agree by an all-gather, which costs a
        synchronisation, every ``check_every_steps`` steps.
        """
        if jax.process_count() == 1:
            return self.received
        if step % check_every_steps:
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.received, np.int32))
        return bool(np.any(flags))


# ---------------------------------------------------------------------------------------------------
# Training


def _total_steps(config, steps_per_epoch: int) -> int:
    if config.num_steps > 0:
        return int(config.num_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _announce(message: str) -> None:
    """A line for the user, printed by process 0 only."""
    if sharding.is_main_process():
        print(message, flush=True)


def _restore(config, checkpoints, state, data_iterator):
    """Auto-resume order: this workdir, ``resume_from``, ``init_checkpoint`` (model only), scratch."""
    abstract = checkpoint_lib.abstract_like(state)
    if checkpoints.latest_step() is not None:
        _announce(f"resuming from {checkpoints.directory} step {checkpoints.latest_step()}")
        return checkpoints.restore(abstract, data_iterator)
    if config.resume_from:
        source = checkpoint_lib.Checkpoints(checkpoint_lib.checkpoint_directory(config.resume_from), read_only=True)
        _announce(f"resuming from config.resume_from={source.directory} step {source.latest_step()}")
        return source.restore(abstract, data_iterator)
    if config.init_checkpoint:
        source = checkpoint_lib.Checkpoints(
            checkpoint_lib.checkpoint_directory(config.init_checkpoint), read_only=True
        )
        _announce(f"initialising the model from config.init_checkpoint={source.directory}")
        model_part = source.restore_subtree({"params": abstract.params, "model_state": abstract.model_state})
        return state.replace(params=model_part["params"], model_state=model_part["model_state"])
    return state


def _write_run_files(workdir: pathlib.Path, config, data) -> None:
    (workdir / config_utils.CONFIG_FILENAME).write_text(config.to_json_best_effort(indent=2))
    summary = {
        "method": config.method,
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "image_shape": list(data.image_shape),
        "num_train": len(data.train),
        "num_query": len(data.query),
        "num_database": len(data.database),
        "data_report": data.report.summary(),
    }
    (workdir / SUMMARY_FILENAME).write_text(json.dumps(summary, indent=2))


def _encode_training_set(config, method, setup, state, data, mesh) -> np.ndarray:
    from jaxretrieval import evaluate  # evaluate imports this module.

    encoder = evaluate.Encoder(config, method, setup.eval_graphdef, mesh)
    return encoder.encode(state, data.train).representations


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> TrainResult:
    """Trains ``config`` in ``workdir`` (resuming whatever is there), then evaluates; see the module doc."""
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    method = methods_lib.get_method(config.method)
    _check_method_and_model(config, method)
    is_main = sharding.is_main_process()

    data = data_lib.build_retrieval_data(config.data, workdir=str(workdir))
    if is_main:
        _write_run_files(workdir, config, data)
    mesh = sharding.make_mesh([tuple(pair) for pair in config.mesh])
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"config.batch_size={config.batch_size} exceeds the {len(data.train)} training examples"
        )
    total_steps = _total_steps(config, steps_per_epoch)

    with jax.set_mesh(mesh):
        setup = _initial_state(
            config, method, num_classes=data.num_classes, mesh=mesh, steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
        )
        batches = data_lib.train_batches(
            data.train,
            global_batch_size=config.batch_size,
            seed=config.seed,
            worker_count=config.data.worker_count,
            prefetch=config.data.prefetch,
        )
        checkpoints = checkpoint_lib.Checkpoints(
            workdir / checkpoint_lib.CHECKPOINT_SUBDIR, max_to_keep=config.keep_checkpoints
        )
        state = _restore(config, checkpoints, setup.state, batches)
        state, preempted = _train_loop(config, method, setup, state, batches, checkpoints, mesh, workdir, total_steps)
        if not preempted and checkpoints.latest_step() != total_steps:
            if method.finalize is not None:
                state = _finalize(config, method, setup, state, data, mesh)
            checkpoints.save(total_steps, state, batches)
        checkpoints.wait()
        checkpoints.close()
        eval_metrics = None
        if config.evaluate_at_end and not preempted:
            from jaxretrieval import evaluate

            eval_metrics = evaluate.evaluate_run(config, method, setup.eval_graphdef, state, data, mesh, workdir)
    return TrainResult(state=state, eval_metrics=eval_metrics, preempted=preempted)


def _finalize(config, method, setup, state, data, mesh) -> TrainState:
    """Fits what is learned after training (mAP_Q's whitening) into the model state."""
    representations = _encode_training_set(config, method, setup, state, data, mesh)
    # Writable host copies: finalize assigns into the model's variables.
    model = nnx.merge(setup.eval_graphdef, *replicated_to_host((state.params, state.model_state)))
    method.finalize(model, representations, config)
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return state.replace(model_state=_replicate(model_state, mesh))


def _train_loop(config, method, setup, state, batches: Iterator, checkpoints, mesh, workdir, total_steps):
    is_main = sharding.is_main_process()
    train_step = jax.jit(make_train_step(config, method, setup), donate_argnums=(0,))
    base_key = _replicate(jax.random.fold_in(_root_key(config), 1), mesh)
    step = int(_host_copy(state.step))
    writer = MetricWriter(workdir, enabled=is_main, start_step=step)
    progress = _Progress(initial=step, total=total_steps, enabled=is_main)
    accumulated: dict[str, list[float]] = {}
    window_start, window_steps = time.perf_counter(), 0
    pending = None  # The previous step's metrics, read after the next step is dispatched (keeps the device busy).
    preempted = False

    def consume(pending_step, pending_metrics):
        nonlocal window_start, window_steps
        values = {name: float(_host_copy(value)) for name, value in pending_metrics.items()}
        _check_finite(pending_step, values)
        for name, value in values.items():
            accumulated.setdefault(name, []).append(value)
        window_steps += 1
        log_now = pending_step % config.log_every_steps == 0 or pending_step == total_steps
        if log_now:
            elapsed = time.perf_counter() - window_start
            summary = {name: float(np.mean(series)) for name, series in accumulated.items()}
            summary["steps_per_second"] = window_steps / elapsed
            summary["images_per_second"] = window_steps * config.batch_size / elapsed
            writer.write(pending_step, summary)
            progress.update(pending_step, summary, log_line=True)
            accumulated.clear()
            window_start, window_steps = time.perf_counter(), 0

    try:
        with _PreemptionSignal() as preemption:
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


# ---------------------------------------------------------------------------------------------------
# Restoring a trained model (evaluate / encode / query)


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A run's config, method, eval-mode model and extras, restored from its latest checkpoint."""

    config: ml_collections.ConfigDict
    method: methods_lib.Method
    model: nnx.Module
    eval_graphdef: Any
    state: TrainState
    step: int
    mesh: jax.sharding.Mesh


def restore_trained_model(workdir: str | pathlib.Path, *, mesh: jax.sharding.Mesh | None = None) -> TrainedModel:
    """The model of ``workdir``'s latest checkpoint (config from ``<workdir>/config.json``)."""
    workdir = pathlib.Path(workdir).absolute()
    config = config_utils.load_config_json(workdir)
    method = methods_lib.get_method(config.method)
    summary = json.loads((workdir / SUMMARY_FILENAME).read_text())
    mesh = mesh or sharding.make_mesh([tuple(pair) for pair in config.mesh])
    with jax.set_mesh(mesh):
        # Shapes only: the abstract state is the restore target; nothing is trained here.
        setup = _initial_state(
            config, method, num_classes=summary["num_classes"], mesh=mesh, steps_per_epoch=1, total_steps=1,
            load_pretrained=False,
        )
        checkpoints = checkpoint_lib.Checkpoints(workdir / checkpoint_lib.CHECKPOINT_SUBDIR, read_only=True)
        step = checkpoints.resolve_step(None)
        state = checkpoints.restore(checkpoint_lib.abstract_like(setup.state), step=step)
    model = nnx.merge(setup.eval_graphdef, state.params, state.model_state)
    return TrainedModel(config, method, model, setup.eval_graphdef, state, step, mesh)
