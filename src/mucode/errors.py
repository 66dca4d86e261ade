"""Error tree: infrastructure failures are exceptions; a failing candidate program is an ordinary result.

Every message is one line that names the problem (the file, the field, the row) so a user can act on it.
"""

from __future__ import annotations


class MucodeError(Exception):
    """Base class of every error mucode raises on purpose."""


class ConfigError(MucodeError):
    """A bad option, config field or environment variable."""


class DataError(MucodeError):
    """A dataset file or row that cannot be read (missing file, malformed JSON, wrong field types)."""


class SandboxError(MucodeError):
    """The sandbox itself failed (executor died, isolation unavailable when required); never a candidate's fault."""


class BackendError(MucodeError):
    """A generation backend failed (missing model file, dead server)."""


def check_positive(name: str, value: object) -> None:
    """ConfigError unless ``value`` is an integer >= 1 (not a bool): the one check of counts and sizes, so
    every option and config field says it the same way."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
