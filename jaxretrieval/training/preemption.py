"""Pre-emption: a SIGTERM is recorded so the loop checkpoints and stops at the next step, on every process."""
from __future__ import annotations

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["PreemptionSignal"]


class PreemptionSignal:
    """Records a SIGTERM (a scheduler's pre-emption notice) while the context is active."""

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
        flags = multihost_utils.process_allgather(np.asarray(self.received, np.int32))
        return bool(np.any(flags))
