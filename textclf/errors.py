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
