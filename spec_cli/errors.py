"""Errors a user can cause, each carrying a one-line message that says what to do."""

from __future__ import annotations


class SpecError(Exception):
    """An expected failure: the CLI prints `str(error)` on one line and exits non-zero."""

    exit_code = 1


class ModelError(SpecError):
    """A model file is missing, unreadable or not a GGUF."""


class PromptError(SpecError):
    """The prompt is missing, empty, not text, or does not fit the context."""


class IncompatibleDraftError(SpecError):
    """The draft model cannot propose tokens in the target's vocabulary."""


class UsageError(SpecError):
    """An option value is out of range or options conflict."""

    exit_code = 2
