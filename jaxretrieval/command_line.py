"""What the four command lines share: flag parsing and how they end on a user error.

A user error (a bad flag, a config key that does not exist, a missing file, a value out of range)
ends the command with a one-line ``error: ...`` on stderr and exit status 2, without a traceback;
set ``JAXRETRIEVAL_TRACEBACK=1`` to see where it came from. A training run stopped by its NaN/Inf
guard exits with status 1 and its one-line message.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from absl import app
from absl import logging as absl_logging

from jaxretrieval.training.config import ConfigError, parse_command_line
from jaxretrieval.training.trainer import NonFiniteMetricError

__all__ = ["USAGE_ERROR_STATUS", "run"]

USAGE_ERROR_STATUS = 2
# Errors a user acts on: what they asked for is wrong or missing, not the program.
_USER_ERRORS = (ValueError, TypeError, OSError, KeyError)


def _fail(error: BaseException, status: int) -> None:
    if os.environ.get("JAXRETRIEVAL_TRACEBACK") == "1":
        raise error
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def _parse(argv: Sequence[str]) -> list[str]:
    try:
        remaining = parse_command_line(argv)
    except ConfigError as error:
        _fail(error, USAGE_ERROR_STATUS)
    if len(remaining) > 1:
        _fail(ValueError(f"unexpected arguments: {' '.join(remaining[1:])}"), USAGE_ERROR_STATUS)
    return remaining


def run(main: Callable[[], None]) -> None:
    """Parses the flags (defined beforehand), then runs ``main()``; see the module docstring."""

    def guarded(argv):
        del argv
        # Orbax and grain log every checkpoint operation at INFO; the commands print what users need.
        absl_logging.set_verbosity(absl_logging.WARNING)
        try:
            main()
        except NonFiniteMetricError as error:
            _fail(error, 1)
        except _USER_ERRORS as error:
            _fail(error, USAGE_ERROR_STATUS)

    app.run(guarded, flags_parser=_parse)
