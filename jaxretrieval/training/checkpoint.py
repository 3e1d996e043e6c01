"""Checkpoints of a training run (orbax): the only module of jaxretrieval that imports orbax.

A run's checkpoints live in its run directory's ``checkpoints/<step>/`` with two items:

- ``state``: the whole train state pytree (step, model parameters, BatchNorm statistics and other model
  variables such as the PCA-whitening, optimizer state, and the method's extras such as hash centers);
- ``data``: the training data iterator's state (grain's ``get_state()``, one JSON file per process), so
  a resumed run continues with exactly the batches an uninterrupted run would have seen.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves no half-written checkpoint to resume from. Saving is asynchronous (the device-to-host
copy happens before :meth:`Checkpoints.save` returns, the file writes in the background); on several
hosts every process calls save / restore collectively.
"""
from __future__ import annotations

import pathlib
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxretrieval.run_directory import checkpoints_of

__all__ = ["Checkpoints", "abstract_like", "load_state_arrays"]

_STATE = "state"
_DATA = "data"


def abstract_like(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` (with sharding) for every array leaf: the restore target of ``tree``."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _handlers() -> dict[str, Any]:
    return {_STATE: ocp.StandardCheckpointHandler(), _DATA: grain.checkpoint.CheckpointHandler()}


class Checkpoints:
    """Saves and restores a run's train state and data iterator; keeps the last ``max_to_keep``.

    Args:
      directory: the checkpoints directory (created when missing unless ``read_only``).
      max_to_keep: how many of the most recent checkpoints stay on disk (older ones are deleted).
      read_only: open someone else's checkpoints (``config.resume_from`` / ``init_checkpoint``) without
        ever writing or deleting there.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3, read_only: bool = False):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory {self.directory} does not exist")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only, read_only=read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, data_iterator: Any = None) -> None:
        """Saves ``state`` (a pytree of arrays) and the iterator's position as checkpoint ``step``.

        A step that is already saved is left alone (saving twice at one step is a no-op).
        """
        if step in self._manager.all_steps():
            return
        items = {_STATE: ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items[_DATA] = grain.checkpoint.CheckpointSave(data_iterator)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, abstract_state: Any, data_iterator: Any = None, *, step: int | None = None) -> Any:
        """The state saved at ``step`` (default: the latest), laid out as ``abstract_state``.

        Args:
          abstract_state: the target structure with ``jax.ShapeDtypeStruct`` leaves carrying the
            shardings to restore into (see :func:`abstract_like`).
          data_iterator: when given, its state is set to the saved position (in place).
          step: which checkpoint; None = the latest.

        Raises:
          FileNotFoundError: there is no checkpoint (at ``step``).
        """
        step = self.resolve_step(step)
        items = {_STATE: ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items[_DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored[_STATE]

    def restore_subtree(self, abstract_subtree: dict[str, Any], *, step: int | None = None) -> dict[str, Any]:
        """Only the top-level entries of the saved state named in ``abstract_subtree`` (e.g. the model).

        Used for ``config.init_checkpoint``: a checkpoint of another run whose optimizer may differ.
        """
        step = self.resolve_step(step)
        reader = _tree_reader(self.directory)
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_subtree)
        item = ocp.args.PyTreeRestore(item=abstract_subtree, restore_args=restore_args, partial_restore=True)
        return reader.restore(step, args=ocp.args.Composite(**{_STATE: item}))[_STATE]

    def restore_arrays(self, names=None, *, step: int | None = None) -> dict[str, Any]:
        """The top-level entries ``names`` (None: all) of the saved state as host numpy trees, read
        without a target: shapes come from the checkpoint's own metadata, arrays land on the host
        whatever devices wrote them. PRNG keys come back as their raw key data."""
        step = self.resolve_step(step)
        reader = _tree_reader(self.directory)
        metadata = reader.item_metadata(step)[_STATE]
        names = list(metadata) if names is None else list(names)
        missing = sorted(set(names) - set(metadata))
        if missing:
            raise KeyError(f"checkpoint {self.directory / str(step)} has no {missing} (it has {sorted(metadata)})")
        subtree = {name: metadata[name] for name in names}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), subtree)
        item = ocp.args.PyTreeRestore(
            item=subtree, restore_args=restore_args, partial_restore=len(names) < len(metadata)
        )
        restored = reader.restore(step, args=ocp.args.Composite(**{_STATE: item}))[_STATE]
        return jax.tree.map(_to_numpy, restored)

    def resolve_step(self, step: int | None) -> int:
        """``step`` if it is saved, the latest when None; FileNotFoundError naming the choices otherwise."""
        available = self._manager.all_steps()
        if step is None:
            step = self._manager.latest_step()
        if step is None or step not in available:
            raise FileNotFoundError(
                f"no checkpoint{'' if step is None else f' at step {step}'} in {self.directory} "
                f"(available steps: {sorted(available)})"
            )
        return step

    def wait(self) -> None:
        """Blocks until background writes are finished (call before reading them or exiting)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _tree_reader(directory: pathlib.Path) -> ocp.CheckpointManager:
    """Reads the ``state`` item as a plain pytree (partial restores, restores without a target)."""
    return ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers={_STATE: ocp.PyTreeCheckpointHandler()},
    )


def load_state_arrays(directory: str | pathlib.Path, *, step: int | None = None) -> dict[str, Any]:
    """The saved train state as nested dicts of numpy arrays, without knowing its structure.

    For inspecting a checkpoint (e.g. comparing the parameters of two runs); ``directory`` is a
    run directory or its checkpoints directory, ``step`` None = the latest.
    """
    return Checkpoints(checkpoints_of(directory), read_only=True).restore_arrays(None, step=step)


def _to_numpy(value):
    """numpy array of a restored leaf; PRNG keys become their raw key data."""
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)
