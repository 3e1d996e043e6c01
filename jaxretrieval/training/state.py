"""The train state and how it is built: graph definitions, abstract shapes, the initial state.

Everything shape-only goes through ``nnx.eval_shape`` / ``jax.eval_shape`` (nothing computed);
the initial state is materialised straight into the mesh's replicated sharding by one jitted init.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxretrieval import models as models_lib
from jaxretrieval import sharding
from jaxretrieval.methods import Method

__all__ = ["Abstract", "ModelDefinition", "TrainState", "abstract_variables", "initial_state", "root_key"]


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


@dataclasses.dataclass(frozen=True)
class ModelDefinition:
    """The static halves of the model: its graph in train mode (Dropout, BatchNorm updates) and eval mode."""

    train_graphdef: Any
    eval_graphdef: Any

    def eval_model(self, params, model_state) -> nnx.Module:
        return nnx.merge(self.eval_graphdef, params, model_state)


@dataclasses.dataclass(frozen=True)
class Abstract:
    """Shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) of a run's model variables.

    (A method's extras may need concrete values to be drawn, e.g. random hash centers: their shapes
    come from the checkpoint when restoring.)
    """

    definition: ModelDefinition
    params: Any
    model_state: Any


def root_key(config: ml_collections.ConfigDict) -> jax.Array:
    return jax.random.key(config.seed, impl=config.rng_impl)


def _model_rngs(key: jax.Array) -> nnx.Rngs:
    params_key, dropout_key = jax.random.split(key)
    return nnx.Rngs(params=params_key, dropout=dropout_key)


def _scratch_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config.model`` without the pretrained path: pretrained weights are loaded after the jitted init."""
    model_config = config.model.copy_and_resolve_references()
    model_config.pretrained_path = ""
    return model_config


def _keys(config):
    """``(model key, extras key)``: the one split of the run's root key every build uses."""
    return jax.random.split(root_key(config))


def abstract_variables(config: ml_collections.ConfigDict) -> Abstract:
    """The graph definitions and the shapes of the model's variables (nothing computed)."""
    model_key, _ = _keys(config)
    model_config = _scratch_model_config(config)
    abstract_model = nnx.eval_shape(lambda: models_lib.build_model(model_config, rngs=_model_rngs(model_key)))
    abstract_model.eval()
    eval_graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    abstract_model.train()
    train_graphdef, params, model_state = nnx.split(abstract_model, nnx.Param, ...)
    return Abstract(ModelDefinition(train_graphdef, eval_graphdef), params, model_state)


def initial_state(
    config: ml_collections.ConfigDict, method: Method, definition: ModelDefinition, *, num_classes: int,
    mesh: jax.sharding.Mesh, tx: optax.GradientTransformation,
) -> TrainState:
    """The run's step-0 state, replicated over ``mesh`` (pretrained backbone weights loaded when configured)."""
    model_key, extras_key = _keys(config)
    model_config = _scratch_model_config(config)
    replicated = sharding.replicated_sharding(mesh)

    @functools.partial(jax.jit, out_shardings=replicated)
    def init_model(key):
        model = models_lib.build_model(model_config, rngs=_model_rngs(key))
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        return params, model_state

    params, model_state = init_model(model_key)
    if config.model.pretrained_path:
        model = nnx.merge(definition.train_graphdef, params, model_state)
        models_lib.load_pretrained(model, config.model.pretrained_path)
        _, params, model_state = nnx.split(model, nnx.Param, ...)
        params, model_state = sharding.replicate((params, model_state), mesh)
    opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
    extras = sharding.replicate(method.init_extras(num_classes, extras_key), mesh)
    return TrainState(
        step=sharding.replicate(np.int32(0), mesh), params=params, model_state=model_state, opt_state=opt_state,
        extras=extras,
    )
