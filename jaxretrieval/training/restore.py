"""A trained model back from its run directory, for inference (evaluate, encode, query, the studies).

Only what inference reads is restored: the step, the model's variables and the method's extras;
their shapes come from ``nnx.eval_shape`` (the model) and from the checkpoint (the extras). No
optimiser is built and no optimiser state is read.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
from flax import nnx

from jaxretrieval import sharding
from jaxretrieval.methods import Method, build_method
from jaxretrieval.run_directory import RunDirectory
from jaxretrieval.training.checkpoint import Checkpoints
from jaxretrieval.training.state import ModelDefinition, abstract_variables

__all__ = ["TrainedModel", "restore_trained_model"]


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A run's config, method, eval-mode model and extras, restored from one of its checkpoints.

    Attributes:
      run: the run directory.
      config: the locked config the run trained with.
      method: the run's method.
      model: the model in eval mode, its arrays replicated on ``mesh``.
      definition: the model's graph definitions (train and eval mode).
      extras: the method's extras (host numpy), e.g. CSQ's hash centers.
      step: the checkpoint's step.
      mesh: the device mesh the arrays live on.
      summary: the run's ``summary.json`` (classes, image shape, split sizes).
    """

    run: RunDirectory
    config: ml_collections.ConfigDict
    method: Method
    model: nnx.Module
    definition: ModelDefinition
    extras: dict[str, Any]
    step: int
    mesh: jax.sharding.Mesh
    summary: dict[str, Any]


def _placed(abstract_tree, sharding_):
    """``jax.ShapeDtypeStruct`` leaves with the target sharding (what orbax restores into)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding_), abstract_tree)


def restore_trained_model(workdir: str | os.PathLike, *, step: int | None = None,
                          mesh: jax.sharding.Mesh | None = None) -> TrainedModel:
    """The model of ``workdir``'s checkpoint ``step`` (None: the latest), on ``mesh`` (default: the run's).

    Raises:
      FileNotFoundError: ``workdir`` is not a run directory, or it has no checkpoint (at ``step``).
    """
    run = RunDirectory(workdir)
    config = run.read_config()
    summary = run.read_summary()
    method = build_method(config)
    mesh = mesh or sharding.make_mesh([tuple(pair) for pair in config.mesh])
    abstract = abstract_variables(config)
    replicated = sharding.replicated_sharding(mesh)
    if not run.checkpoints_dir.is_dir():
        raise FileNotFoundError(f"{run.checkpoints_dir} not found: {run.path} has no checkpoint yet")
    checkpoints = Checkpoints(run.checkpoints_dir, read_only=True)
    step = checkpoints.resolve_step(step)
    with jax.set_mesh(mesh):
        restored = checkpoints.restore_subtree(
            {"params": _placed(abstract.params, replicated), "model_state": _placed(abstract.model_state, replicated)},
            step=step,
        )
    extras = checkpoints.restore_arrays(["extras"], step=step)["extras"]
    model = abstract.definition.eval_model(restored["params"], restored["model_state"])
    return TrainedModel(run, config, method, model, abstract.definition, extras, step, mesh, summary)
