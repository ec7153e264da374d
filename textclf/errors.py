"""Errors that textclf raises for bad input.

Every one of them carries a single line that says what was expected, what was found and what to do, so the CLI and
the UI can show it as is instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

INTERRUPTED = "interrupted: finished trials are saved in the storage; rerun the same command to resume"


class TextclfError(ValueError):
    """Base class of all user-facing textclf errors (bad data, bad config, unavailable backbone...)."""


class DataError(TextclfError):
    """The data cannot be used as given."""


class ConfigError(TextclfError):
    """A setting is out of range or inconsistent with the study it is applied to."""


class BackboneUnavailable(TextclfError):
    """A backbone is unknown or its weights/tokenizer cannot be found."""


def caused_by_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` is, or was raised while handling, a KeyboardInterrupt: a Ctrl-C (or the dashboard's Stop)
    that lands while a C extension initialises during an import surfaces as ``ImportError: initialization failed``
    caused by it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


class Interrupt:
    """Ctrl-C (and the dashboard's Stop, which sends SIGINT): KeyboardInterrupt at once, as Python's own handler
    does, and remembered, so a study raises it again at its next training step when it was lost on the way: Python
    drops an exception raised inside a garbage-collection callback (a Stop that landed in one of SQLAlchemy's let
    the study run on to its end), and a library importing an optional module may take an interrupt that lands in
    that import for a missing module."""

    def __init__(self) -> None:
        self._requested = False

    def handle(self, signum: int, frame: object) -> None:
        self._requested = True
        raise KeyboardInterrupt

    def requested(self) -> bool:
        return self._requested


PROCESS_INTERRUPT = Interrupt()  # the command line's: installed by ``python -m textclf`` before anything is imported


def quiet_lost_interrupt(unraisable: Any) -> None:
    """``sys.unraisablehook`` for the command line: an interrupt raised inside a garbage-collection or weakref
    callback cannot propagate, and Python would print it with a traceback. :data:`PROCESS_INTERRUPT` remembered it
    (the study stops at its next step), so it needs no report of its own; anything else is reported as usual."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)
