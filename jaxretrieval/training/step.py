"""The pure train step ``(state, batch, key) -> (state, metrics)``; the trainer jits it with the state donated."""
from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from flax import nnx

from jaxretrieval import multistage
from jaxretrieval.methods import ListwiseMethod, Method
from jaxretrieval.training.state import ModelDefinition, TrainState

__all__ = ["make_train_step"]

TrainStep = Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]


def _plain_value_and_grad(method: Method, definition: ModelDefinition):
    """The loss and its gradient through the whole batch at once, the model in train mode."""

    def value_and_grad(state, batch, loss_key, dropout_key):
        # Reseeding mutates the model, so it happens here, outside the differentiated function.
        seeded = nnx.merge(definition.train_graphdef, state.params, state.model_state)
        nnx.reseed(seeded, dropout=dropout_key)
        _, _, seeded_model_state = nnx.split(seeded, nnx.Param, ...)

        def loss_fn(params):
            model = nnx.merge(definition.train_graphdef, params, seeded_model_state, copy=True)
            loss, metrics = method.loss(model, batch, state.extras, loss_key)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, model_state)

        (_, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return metrics, model_state, grads

    return value_and_grad


def _multistage_value_and_grad(method: ListwiseMethod, definition: ModelDefinition, micro_batch_size: int):
    """Multistage backprop: embeddings of micro-batches, the listwise loss on all of them, gradients
    back micro-batch by micro-batch (BatchNorm frozen: eval mode; no dropout)."""

    def value_and_grad(state, batch, loss_key, dropout_key):
        del dropout_key

        def embed(params, images):
            return nnx.merge(definition.eval_graphdef, params, state.model_state)(images)

        micro_batched = multistage.micro_batched_value_and_grad(
            embed, method.listwise_loss, micro_batch_size=micro_batch_size
        )
        loss, grads = micro_batched(state.params, method.training_views(loss_key, batch["image"]), batch["label"])
        return {"loss": loss}, state.model_state, grads

    return value_and_grad


def make_train_step(method: Method, definition: ModelDefinition, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, micro_batch_size: int = 0) -> TrainStep:
    """The pure step. Its randomness is ``jax.random.fold_in(key, state.step)``, so a resumed run
    takes exactly the steps of an uninterrupted one.

    ``micro_batch_size > 0``: multistage backprop, for a :class:`~jaxretrieval.methods.ListwiseMethod`.
    """
    if micro_batch_size > 0:
        if not isinstance(method, ListwiseMethod):
            raise ValueError(
                f"config.micro_batch_size={micro_batch_size} (multistage backprop) is for listwise methods; "
                f"{method.name!r} has no listwise loss: set it to 0"
            )
        value_and_grad = _multistage_value_and_grad(method, definition, micro_batch_size)
    else:
        value_and_grad = _plain_value_and_grad(method, definition)

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        loss_key, dropout_key = jax.random.split(jax.random.fold_in(key, state.step))
        metrics, model_state, grads = value_and_grad(state, batch, loss_key, dropout_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, learning_rate=schedule(state.step), grad_norm=optax.tree.norm(grads))
        new_state = state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state)
        return new_state, metrics

    return train_step
