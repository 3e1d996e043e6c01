"""The optax optimiser and learning-rate schedule of ``config.optimizer`` / ``config.schedule``."""
from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

from jaxretrieval import models as models_lib

__all__ = ["build_optimizer", "learning_rate_schedule"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")


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
        raise ValueError(f"config.schedule.name must be one of {', '.join(SCHEDULES)}, got {schedule_config.name!r}")
    if warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, transition_steps=warmup_steps)
    return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def _with_weight_decay(weight_decay: float, transformation: optax.GradientTransformation) -> optax.GradientTransformation:
    # torch.optim's weight_decay (what CSQ and SPQ use with Adam) is an L2 term added to the gradient.
    return optax.chain(optax.add_decayed_weights(weight_decay), transformation) if weight_decay else transformation


def _base_optimizer(optimizer_config, learning_rate: optax.Schedule) -> optax.GradientTransformation:
    name = optimizer_config.name
    weight_decay = optimizer_config.weight_decay
    momentum = optimizer_config.momentum or None
    if name == "adam":
        adam = optax.adam(learning_rate, b1=optimizer_config.b1, b2=optimizer_config.b2, eps=optimizer_config.eps)
        return _with_weight_decay(weight_decay, adam)
    if name == "adamw":
        return optax.adamw(
            learning_rate, b1=optimizer_config.b1, b2=optimizer_config.b2, eps=optimizer_config.eps,
            weight_decay=weight_decay,
        )
    if name == "sgd":
        return _with_weight_decay(weight_decay, optax.sgd(learning_rate, momentum=momentum, nesterov=optimizer_config.nesterov))
    if name == "rmsprop":
        rmsprop = optax.rmsprop(
            learning_rate, decay=optimizer_config.rmsprop_decay, eps=optimizer_config.eps, momentum=momentum,
            nesterov=optimizer_config.nesterov,
        )
        return _with_weight_decay(weight_decay, rmsprop)
    raise ValueError(f"config.optimizer.name must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


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
    ``grad_clip_norm > 0`` clips the global gradient norm first. ``params`` may be abstract
    (``jax.ShapeDtypeStruct`` leaves): only its structure is read.
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
