"""Errors that textclf raises for bad input.

Every one of them carries a single line that says what was expected, what was found and what to do, so the CLI and
the UI can show it as is instead of a traceback.
"""

from __future__ import annotations

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
