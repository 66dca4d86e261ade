"""Read JSONL rows into strict pydantic models; every failure is a one-line ``DataError`` naming file:line.

Strict models (no coercion) catch the mistakes that matter in hand-written problem files: a test given as a
string instead of a list, a numeric task id where a string is expected, a misspelt key.
"""

from __future__ import annotations

import gzip
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mucode.errors import DataError

Row = TypeVar("Row", bound=BaseModel)

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object"}
_PLURALS = {str: "strings", int: "integers", float: "numbers", list: "lists", dict: "objects"}


def read_rows(path: Path, model: type[Row], key: str = "task_id") -> list[tuple[int, Row]]:
    """Validated rows with their 1-based line numbers. Blank lines are skipped.

    Raises DataError for an unreadable or empty file, bad JSON, a non-object line, a schema violation or a
    repeated ``key`` (a duplicate task id would silently shadow a problem in every id-keyed lookup).
    """
    try:
        lines = _read_text(path).splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    rows: list[tuple[int, Row]] = []
    first_line: dict[Any, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = validate_row(model, _parse_json(line, f"{path}:{number}"), f"{path}:{number}")
        value = getattr(row, key)
        if value in first_line:
            first = first_line[value]
            raise DataError(f"{path}:{number}: duplicate {key} {str(value)!r} (first on line {first})")
        first_line[value] = number
        rows.append((number, row))
    if not rows:
        raise DataError(f"{path}: no problems (the file is empty)")
    return rows


def _read_text(path: Path) -> str:
    """The file's text; a ``.gz`` file is decompressed (the bundled MBPP copy is stored that way)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            return stream.read()
    return path.read_text(encoding="utf-8")


def validate_row(model: type[Row], obj: object, where: str) -> Row:
    """``obj`` as a ``model``; ``where`` ("file:line", "hub split row") prefixes the error message."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as error:
        raise DataError(f"{where}: {_describe_error(model, error)}") from None


def _parse_json(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None


def _describe_error(model: type[BaseModel], error: ValidationError) -> str:
    """The first problem in words: the field and what it must be, not pydantic's multi-line report."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    kind = first["type"]
    if kind == "missing":
        return f"field {field!r} is missing"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    if kind == "too_short":
        return f"field {field!r} must not be empty"
    info = model.model_fields.get(field)
    expected = _type_name(info.annotation) if info is not None else "valid"
    return f"field {field!r} must be {expected}"


def _type_name(annotation: Any) -> str:
    """'a list of strings', 'a string or null': the annotation as a user would say it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        item = (typing.get_origin(args[0]) or args[0]) if args else None
        return f"a list of {_PLURALS.get(item, 'values')}"
    return _NAMES.get(origin or annotation, "valid")
