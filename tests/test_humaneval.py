"""HumanEval loading and the docstring-example public/private split (docs/humaneval_tests.md)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mucode.errors import DataError
from mucode.problems.humaneval import FLOAT_TOLERANCE, humaneval_examples, load_humaneval
from mucode.types import Problem

#: Problems whose public test does not come from a docstring example (docs/humaneval_tests.md).
WITHOUT_EXAMPLES = {"HumanEval/38", "HumanEval/41", "HumanEval/50", "HumanEval/83", "HumanEval/105",
                    "HumanEval/160"}

# Runs one trusted program, then each test in a copy of its namespace; prints one error string per test
# ("" = passed). Mirrors the sandbox's order: prelude + code, setup, then each test on its own.
RUNNER = r"""
import contextlib, io, json, sys
job = json.load(sys.stdin)
namespace, errors = {}, []
with contextlib.redirect_stdout(io.StringIO()):
    try:
        exec(compile(job["program"], "solution.py", "exec"), namespace)
    except BaseException as exc:
        errors = [f"program: {type(exc).__name__}: {exc}"] * len(job["tests"])
    else:
        for test in job["tests"]:
            try:
                exec(compile(test, "test.py", "exec"), dict(namespace))
                errors.append("")
            except BaseException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_humaneval()


def _examples(doc: str, signature: str = "f(x)", before: str = "") -> list[str]:
    """The examples parsed from a one-function prompt with docstring ``doc``."""
    name = signature.split("(")[0]
    return humaneval_examples(f'{before}def {signature}:\n    """{doc}\n    """\n', name)


def _run_canonical(problem: Problem) -> list[str]:
    """One error string per test of ``problem`` run against its canonical solution ("" = passed)."""
    job = {"program": problem.prelude + problem.solution + "\n" + problem.setup_code,
           "tests": list(problem.all_tests)}
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(job), capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return ["timeout"] * len(job["tests"])
    if done.returncode != 0:
        return [f"runner exited {done.returncode}: {done.stderr[-300:]}"] * len(job["tests"])
    return json.loads(done.stdout.splitlines()[-1])


# ------------------------------------------------------------------------------------------ loading


def test_loads_all_164_problems_in_order(problems: list[Problem]) -> None:
    assert [p.task_id for p in problems] == [f"HumanEval/{n}" for n in range(164)]
    for problem in problems:
        assert problem.source == "humaneval"
        assert problem.setup_code == ""
        assert problem.solution.startswith(problem.prompt)
        assert f"def {problem.entry_point}(" in problem.prompt


def test_loading_is_fast_and_deterministic(problems: list[Problem]) -> None:
    start = time.perf_counter()
    again = load_humaneval()
    assert time.perf_counter() - start < 1.0
    assert again == problems


def test_prelude_is_the_prompt_before_the_entry_point(problems: list[Problem]) -> None:
    by_id = {p.task_id: p for p in problems}
    assert by_id["HumanEval/0"].prelude == "from typing import List\n"
    assert "import math" in by_id["HumanEval/32"].prelude and "def poly(" in by_id["HumanEval/32"].prelude
    assert "def is_palindrome(" in by_id["HumanEval/10"].prelude
    assert "def encode_cyclic(" in by_id["HumanEval/38"].prelude
    assert by_id["HumanEval/2"].prelude == ""
    for problem in problems:
        assert problem.prompt.startswith(problem.prelude.rstrip())
        assert f"def {problem.entry_point}(" not in problem.prelude


def test_split_is_one_public_test_and_the_official_check_last(problems: list[Problem]) -> None:
    for problem in problems:
        assert len(problem.public_tests) == 1
        official = problem.private_tests[-1]
        assert official.endswith(f"\ncheck({problem.entry_point})")
        assert "def check(" in official
        assert problem.public_tests[0] not in problem.private_tests


def test_public_test_is_the_first_docstring_example(problems: list[Problem]) -> None:
    without = set()
    for problem in problems:
        examples = humaneval_examples(problem.prompt, problem.entry_point)
        if not examples:
            without.add(problem.task_id)
            assert len(problem.private_tests) == 1
            continue
        assert problem.public_tests[0] == examples[0]
        assert problem.private_tests[:-1] == tuple(examples[1:])
    assert without == WITHOUT_EXAMPLES


def test_fallback_public_tests(problems: list[Problem]) -> None:
    public = {p.task_id: p.public_tests[0] for p in problems if p.task_id in WITHOUT_EXAMPLES}
    assert public == {
        "HumanEval/38": "assert decode_cyclic(encode_cyclic('abcdefgh')) == 'abcdefgh'",
        "HumanEval/41": "assert car_race_collision(2) == 4",
        "HumanEval/50": "assert decode_shift(encode_shift('abcxyz')) == 'abcxyz'",
        "HumanEval/83": "assert starts_one_ends(1) == 1",
        "HumanEval/105": "assert by_length([2, 1, 1, 4, 5, 8, 2, 3]) == "
                         "['Eight', 'Five', 'Four', 'Three', 'Two', 'Two', 'One', 'One']",
        "HumanEval/160": "assert do_algebra(['**', '*', '+'], [2, 3, 4, 5]) == 37",
    }


def test_every_snippet_compiles(problems: list[Problem]) -> None:
    for problem in problems:
        compile(problem.prelude + problem.solution, f"{problem.task_id}/solution", "exec")
        for index, snippet in enumerate(problem.all_tests):
            assert snippet.strip(), f"{problem.task_id} test {index} is empty"
            compile(snippet, f"{problem.task_id}/test{index}", "exec")


def test_canonical_solutions_pass_every_test(problems: list[Problem]) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_run_canonical, problems))
    failures = [f"{problem.task_id} test {index}: {error}  <- {problem.all_tests[index][:120]!r}"
                for problem, errors in zip(problems, outcomes, strict=True)
                for index, error in enumerate(errors) if error]
    total = sum(len(p.all_tests) for p in problems)
    print(f"{total - len(failures)}/{total} snippets passed")
    assert not failures, "\n".join(failures)


def test_canonical_solutions_pass_every_test_in_the_sandbox(problems: list[Problem]) -> None:
    try:
        from mucode.sandbox import Job, Sandbox
    except ImportError as exc:
        pytest.skip(f"mucode.sandbox is not importable yet: {exc}")
    jobs = [Job(code=p.solution, tests=list(p.all_tests), prelude=p.prelude, setup=p.setup_code)
            for p in problems]
    with Sandbox() as sandbox:
        results = sandbox.run_many(jobs)
    failures = [f"{problem.task_id}: {result.feedback[:300]}"
                for problem, result in zip(problems, results, strict=True) if not result.passed]
    assert not failures, "\n".join(failures)


def test_example_counts_agree_with_humanevalpack(problems: list[Problem]) -> None:
    from mucode.problems.datadir import resolve_data_file

    try:
        path = resolve_data_file("humanevalpack-python.jsonl")
    except DataError as exc:
        pytest.skip(f"HumanEvalPack file not available: {exc}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = {row["task_id"].replace("Python/", "HumanEval/"): row["example_test"] for row in rows}
    mismatches = []
    for problem in problems:
        # HumanEvalPack pads example_test with dummy `assert True` lines; they are not examples.
        theirs = len(re.findall(r"^\s*assert\s+(?!True\b)", expected[problem.task_id], flags=re.MULTILINE))
        ours = len(humaneval_examples(problem.prompt, problem.entry_point))
        if theirs != ours:
            mismatches.append(f"{problem.task_id}: HumanEvalPack {theirs}, ours {ours}")
    print(f"{len(problems) - len(mismatches)}/{len(problems)} agree; mismatches:", *mismatches, sep="\n  ")
    assert len(problems) - len(mismatches) >= 150, "\n".join(mismatches)


# ---------------------------------------------------------------------------------- parser styles


def test_doctest_examples() -> None:
    doc = """Doc.
    >>> f(1)
    2
    >>> f('a')
    'b'
    """
    assert _examples(doc) == ["assert f(1) == 2", "assert f('a') == 'b'"]


def test_doctest_without_printed_value_is_a_comparison_or_none() -> None:
    doc = """Doc.
    >>> f([])

    >>> f([1]) == 3
    >>> f(2)
    'x'
    """
    assert _examples(doc) == ["assert f([]) is None", "assert f([1]) == 3", "assert f(2) == 'x'"]


def test_doctest_printed_value_may_span_lines_and_have_a_comment() -> None:
    doc = """Doc.
    >>> round(f([1, 2]), 2) # f(x) = 1 + 2x
    -0.5
    >>> f(2)
    ["a",
     "b"]
    """
    assert _examples(doc) == [f"assert abs(round(f([1, 2]), 2) - (-0.5)) < {FLOAT_TOLERANCE}",
                              'assert f(2) == ["a", "b"]']


def test_doctest_mode_ignores_prose_definitions() -> None:
    doc = """f(0) -> 0
    f(n) -> f(n-1) + 1
    >>> f(5)
    5
    """
    assert _examples(doc) == ["assert f(5) == 5"]


@pytest.mark.parametrize("line", [
    "f(1) ==> 2", "f(1) => 2", "f(1) -> 2", "f(1) ➞ 2", "f(1) = 2", "f(1) == 2", "f(1)==2",
    "f(1) should return 2.", "f(1) returns 2", "f(1)   # returns 2", "f(1) # => 2", "* f(1) -> 2",
    "for f(1) == 2", "f(1) ->2 # because", "f(1) -> 1 + 1 = 2", "f(1) -> 2 (the reason)",
])
def test_prose_separators(line: str) -> None:
    assert _examples(f"Examples:\n    {line}") == ["assert f(1) == 2"]


@pytest.mark.parametrize(("expected", "assertion"), [
    ("2.5", f"assert abs(f(1) - 2.5) < {FLOAT_TOLERANCE}"),
    ("-2.5", f"assert abs(f(1) - (-2.5)) < {FLOAT_TOLERANCE}"),
    ("6.00", f"assert abs(f(1) - 6.00) < {FLOAT_TOLERANCE}"),
    ("[0.5, 1.0]", "assert f(1) == [0.5, 1.0]"),
    ("None", "assert f(1) is None"),
    ("true", "assert f(1) == True"),
    ("False.", "assert f(1) == False"),
    ("16.", "assert f(1) == 16"),
    ("'it''s'", "assert f(1) == 'it''s'"),
    ('"a=b"', 'assert f(1) == "a=b"'),
    ("('x', True)", "assert f(1) == ('x', True)"),
    ("{'a': 1}", "assert f(1) == {'a': 1}"),
])
def test_expected_values(expected: str, assertion: str) -> None:
    assert _examples(f"Examples:\n    f(1) == {expected}") == [assertion]


def test_call_arguments_keep_strings_escapes_and_brackets() -> None:
    doc = r"""Examples:
    f('(()', "a\nb") == 1
    f(" a   b ", [1, (2, 3)]) -> 'x'
    """
    assert _examples(doc, "f(a, b)") == [r"""assert f('(()', "a\nb") == 1""",
                                         """assert f(" a   b ", [1, (2, 3)]) == 'x'"""]


def test_call_spanning_lines() -> None:
    doc = """Examples:
    f([
      [1, 2],
      [3]
    ], 1) == [(0, 0)]
    f([], 1) == []
    """
    assert _examples(doc, "f(a, b)") == ["assert f([ [1, 2], [3] ], 1) == [(0, 0)]", "assert f([], 1) == []"]


def test_for_lines_with_named_arguments() -> None:
    doc = """Example
    For b = 2, a = [1], the result should be ('x', False)
    For a = [3], b = 4 the output should be 7.
    For a = 1, b = 2, which is small, the output should be "3".
    """
    assert _examples(doc, "f(a, b)") == ["assert f([1], 2) == ('x', False)", "assert f([3], 4) == 7",
                                         'assert f(1, 2) == "3"']


def test_input_output_blocks() -> None:
    doc = """Example 1:
        Input: [4,2,3]
        Output: [2, 1]
        Explanation: ...

    Example 2:
        Input: arr = [1], k = 3
        Output: 24 # a comment
    """
    assert _examples(doc, "f(arr, k=0)") == ["assert f([4,2,3]) == [2, 1]", "assert f([1], 3) == 24"]


def test_input_block_with_name_colon_value_lines_goes_by_written_order() -> None:
    doc = """Example:
        Input:
            grid : [[0,1]]
            bucket_capacity : 1
        Output: 6
    """
    assert _examples(doc, "f(grid, capacity)") == ["assert f([[0,1]], 1) == 6"]


@pytest.mark.parametrize("line", [
    "g(1) == 2",  # another function
    "f(a) => 2",  # a free name
    "f(n) = f(n - 1) + 1",  # a definition
    "f(3) = f(2) + 1",  # the expected side calls the function
    'f(1) == ""x"',  # unparsable expected value
    "f(1) is nice",  # no separator
    "f(1) ==",  # no expected value
    "Call f() to compute it",
])
def test_unusable_lines_are_dropped(line: str) -> None:
    assert _examples(f"Examples:\n    {line}\n    f(9) == 9") == ["assert f(9) == 9"]


def test_prelude_helpers_may_be_used_but_unknown_names_not() -> None:
    before = "import math\n\n\ndef helper(s):\n    return s\n\n\n"
    doc = """Examples:
    f(helper('a')) == 'a'
    f(math.pi) == 1
    f(other('a')) == 'a'
    """
    assert _examples(doc, before=before) == ["assert f(helper('a')) == 'a'", "assert f(math.pi) == 1"]


def test_no_docstring_or_no_function_gives_no_examples() -> None:
    assert humaneval_examples("def f(x):\n    pass\n", "f") == []
    assert humaneval_examples("def g(x):\n    '''>>> g(1)\n    1'''\n", "f") == []
    assert humaneval_examples("def f(x:\n", "f") == []


def test_errata_correct_known_docstring_mistakes(problems: list[Problem]) -> None:
    tests = {p.task_id: p.all_tests for p in problems}
    assert "assert is_happy('a') == False" in tests["HumanEval/80"]
    assert 'assert bf("Earth", "Mercury") == ("Venus",)' in tests["HumanEval/148"]
    assert tests["HumanEval/130"][0] == "assert tri(3) == [1, 3, 2, 8]"
    assert tests["HumanEval/149"][0] == 'assert sorted_list_sum(["aa", "a", "aaa"]) == ["aa"]'


# ------------------------------------------------------------------------------------------ bad input


def _write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(text)
    return path


def test_reads_an_explicit_plain_or_gzipped_file(tmp_path: Path) -> None:
    row = {"task_id": "HumanEval/0", "prompt": 'def f(x):\n    """>>> f(1)\n    2\n    """\n',
           "entry_point": "f", "canonical_solution": "    return x + 1\n",
           "test": "def check(candidate):\n    assert candidate(1) == 2\n"}
    plain = tmp_path / "he.jsonl"
    plain.write_text(json.dumps(row) + "\n\n", encoding="utf-8")
    for path in (plain, _write_gz(tmp_path / "he.jsonl.gz", json.dumps(row) + "\n")):
        [problem] = load_humaneval(path)
        assert problem.public_tests == ("assert f(1) == 2",)
        assert problem.private_tests == (row["test"] + "\ncheck(f)",)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read HumanEval data"),
    ("", "no problems (the file is empty)"),
    ("not json\n", ":1: invalid JSON"),
    ("\n[1, 2]\n", ":2: expected a JSON object"),
    ('{"task_id": "HumanEval/0"}\n', ":1: field 'prompt' is missing"),
    ('{"task_id": 0, "prompt": "", "entry_point": "f", "canonical_solution": "", "test": ""}\n',
     ":1: field 'task_id' must be a string"),
    ('{"task_id": "X", "prompt": "x = 1\\n", "entry_point": "f", "canonical_solution": "", "test": ""}\n',
     "X: the prompt does not define f()"),
])
def test_bad_data_raises_one_line_data_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "HumanEval.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        load_humaneval(path)
    assert "\n" not in str(caught.value)


def test_corrupt_gzip_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "HumanEval.jsonl.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read HumanEval data"):
        load_humaneval(path)
