"""Errors a person can act on.

Every exception ambient raises on purpose is an :class:`AmbientError`; its
message says what is wrong *and* what to do next. The CLI prints it as one line
and exits with status 2; the HTTP API turns it into a 4xx with the same text.
"""

from __future__ import annotations


class AmbientError(Exception):
    """A problem the user can fix; ``str(err)`` names the fix."""

    http_status = 400


class ConfigError(AmbientError):
    """A configuration key is missing, unknown or has a bad value."""


class InvalidInput(AmbientError):
    """Input text, options or files that ambient cannot use."""


class NotFound(AmbientError):
    """An unknown tree, node, offer or file."""

    http_status = 404


class Conflict(AmbientError):
    """The action no longer fits the current state (e.g. the note moved on)."""

    http_status = 409


class ModelUnavailable(AmbientError):
    """The model (or its files) cannot be loaded; never triggers a download."""

    http_status = 503


class MemoryUnavailable(AmbientError):
    """The vector store cannot be reached or read."""

    http_status = 503
