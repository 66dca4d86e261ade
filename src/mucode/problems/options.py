"""Validation of the few string options the loaders take (split, policy, dataset)."""

from __future__ import annotations

from collections.abc import Iterable

from mucode.errors import ConfigError


def check_choice(option: str, value: object, choices: Iterable[str]) -> None:
    """Raise ConfigError naming ``option`` and the valid values unless ``value`` is one of ``choices``."""
    valid = list(choices)
    if value not in valid:
        raise ConfigError(f"unknown {option} {value!r}; choose one of: {', '.join(valid)}")
