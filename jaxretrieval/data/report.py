"""Bookkeeping for images that could not be read, so that none disappears silently.

A long run must not crash on one corrupt file, and it must not lose the file without a trace either: the
pipeline skips (training) or masks (evaluation) an unreadable example and records it here with its path
and the reason. The trainer writes :meth:`LoadReport.summary` into the run summary.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading

logger = logging.getLogger(__name__)


class UnreadableExampleError(ValueError):
    """An example whose image cannot be decoded (corrupt, truncated, missing or of the wrong size).

    Raised by the sources' ``__getitem__`` so that direct use fails loudly with the path; the pipeline
    catches it, records it in the :class:`LoadReport` and carries on.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


class LoadReport:
    """Thread-safe record of unreadable files, optionally mirrored to a JSON-lines file.

    Grain worker processes hold their own copies of the sources (and so of this report); with
    ``log_path`` set, every record is also appended to that file, and :meth:`summary` merges the file,
    so skips seen in worker processes reach the run summary too. Each (path, reason) counts once, however
    many epochs meet it.

    >>> report = LoadReport()
    >>> report.add("a/broken.jpg", "truncated")
    >>> report.add("a/broken.jpg", "truncated")
    >>> report.summary()
    {'num_skipped': 1, 'skipped': [{'path': 'a/broken.jpg', 'reason': 'truncated'}]}
    """

    def __init__(self, log_path: str | os.PathLike | None = None):
        self.log_path = None if log_path is None else os.fspath(log_path)
        self._skipped: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._lock = threading.Lock()

    def add(self, path: str, reason: str) -> None:
        """Records that ``path`` was skipped because of ``reason`` (logged once per pair)."""
        key = (str(path), str(reason))
        with self._lock:
            if key in self._skipped:
                return
            self._skipped[key] = None
            if self.log_path is not None:
                # One short O_APPEND write per record: atomic enough for several writer processes.
                with open(self.log_path, "a", encoding="utf-8") as log_file:
                    log_file.write(json.dumps({"path": key[0], "reason": key[1]}) + "\n")
        logger.warning("skipped unreadable image %s: %s", key[0], key[1])

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        """All distinct skipped files, those from ``log_path`` included, in the order first seen."""
        with self._lock:
            keys = dict(self._skipped)
        if self.log_path is not None and os.path.exists(self.log_path):
            with open(self.log_path, encoding="utf-8") as log_file:
                for line in log_file:
                    if line.strip():
                        record = json.loads(line)
                        keys.setdefault((record["path"], record["reason"]), None)
        return tuple(SkippedFile(path, reason) for path, reason in keys)

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self) -> dict:
        """A JSON-ready dict: ``num_skipped`` and the list of ``{"path", "reason"}`` records."""
        skipped = self.skipped
        return {
            "num_skipped": len(skipped),
            "skipped": [dataclasses.asdict(record) for record in skipped],
        }

    # A lock cannot be pickled into grain worker processes; each copy gets its own.
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
