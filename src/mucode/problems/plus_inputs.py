"""EvalPlus test inputs: from their JSON form back to the Python values the tasks expect, then to source code.

JSON has no tuples, sets or complex numbers, so EvalPlus stores such MBPP+ arguments as lists or strings and
converts them when loading (``evalplus.data.mbpp.mbpp_deserialize_inputs``, unchanged from v0.1.0 to the
v0.2.0 data). ``MBPP_INPUT_SHAPES`` is that table. HumanEval+ inputs need no conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Args = list[Any]


def _each_tuple(args: Args) -> Args:
    return [tuple(arg) for arg in args]


def _items_tuple(args: Args) -> Args:
    return [[tuple(item) for item in arg] for arg in args]


def _first_items_tuple(args: Args) -> Args:
    return [[tuple(item) for item in args[0]], *args[1:]]


def _first_tuple(args: Args) -> Args:
    return [tuple(args[0]), *args[1:]]


def _second_tuple(args: Args) -> Args:
    return [args[0], tuple(args[1]), *args[2:]]


def _deep_tuple(value: Any) -> Any:
    return tuple(_deep_tuple(item) for item in value) if isinstance(value, list) else value


def _sets_or_empty(args: Args) -> Args:
    return [[set(item) if isinstance(item, list) and item else {} for item in args[0]]]


def _tuple_items_then_each(args: Args) -> Args:
    return _each_tuple([[tuple(item) if isinstance(item, list) else item for item in args[0]]])


def _dict_values_tuple(args: Args) -> Args:
    return [{key: tuple(value) for key, value in args[0].items()}, *args[1:]]


#: MBPP+ task number -> conversion of one input's argument list.
MBPP_INPUT_SHAPES: dict[int, Callable[[Args], Any]] = {
    **dict.fromkeys((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
                     726, 740, 744, 809), _each_tuple),
    **dict.fromkeys((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _items_tuple),
    **dict.fromkeys((75, 413, 444, 753), _first_items_tuple),
    **dict.fromkeys((106, 750), _second_tuple),
    **dict.fromkeys((250, 307, 405, 446, 617, 720, 763, 808), _first_tuple),
    **dict.fromkeys((259, 401, 445), lambda args: _each_tuple(_items_tuple(args))),
    **dict.fromkeys((580, 615, 791), _deep_tuple),
    115: _sets_or_empty,
    124: lambda args: [float(args[0]), complex(args[1])],
    252: lambda args: [complex(args[0])],
    278: _tuple_items_then_each,
    722: _dict_values_tuple,
}


def mbpp_plus_args(task_id: str, inputs: list[Args]) -> list[Any]:
    """``inputs`` of MBPP+ task ``task_id`` ("Mbpp/2") with tuples, sets and complex numbers restored."""
    shape = MBPP_INPUT_SHAPES.get(int(task_id.rsplit("/", 1)[-1]))
    return [shape(args) for args in inputs] if shape else inputs


def python_literal(value: Any) -> str:
    """Python source that evaluates to ``value``; unlike ``repr`` it is valid for inf, nan and sets of any
    order (elements are sorted by their source, so the text, and hence the dataset fingerprint, is stable)."""
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, complex):
        return f"complex({python_literal(value.real)}, {python_literal(value.imag)})"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, tuple):
        items = [python_literal(item) for item in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, set):
        items = sorted(python_literal(item) for item in value)
        return ("{" + ", ".join(items) + "}") if items else "set()"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for {type(value).__name__}")
