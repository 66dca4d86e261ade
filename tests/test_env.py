"""mucode.env: prompt templates, code extraction, feedback, episodes (with a fake and the real sandbox)."""

from __future__ import annotations

import json
import re

import pytest

from mucode.env import (
    INSTRUCTIONS,
    NO_CODE_FEEDBACK,
    CandidateResult,
    Episode,
    EpisodeConfig,
    Turn,
    build_prompt,
    evaluate_candidates,
    extract_code,
    feedback_message,
    function_signature,
    step_episodes,
    truncate_middle,
)
from mucode.errors import ConfigError, SandboxError
from mucode.types import PASSED_FEEDBACK, ExecResult, Problem, TestVerdict
from mucode.types import TestStatus as Status  # aliased: pytest would try to collect a Test* class

# ------------------------------------------------------------------------------------------------ fixtures

MBPP_LIKE = Problem(
    task_id="mbpp/2",
    prompt="Write a function to find the similar elements from the given two tuple lists.",
    entry_point="similar_elements",
    public_tests=("assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",),
    private_tests=("assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"),
    solution="def similar_elements(test_tup1, test_tup2):\r\n"
             "  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
    source="mbpp",
)

HE_PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
'''

HE_BODY = """    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2 and abs(elem - elem2) < threshold:
                return True
    return False
"""

HUMANEVAL_LIKE = Problem(
    task_id="HumanEval/0",
    prompt=HE_PROMPT,
    entry_point="has_close_elements",
    public_tests=("assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False",),
    private_tests=("assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) == True",),
    solution=HE_PROMPT + HE_BODY,
    prelude="from typing import List\n",
    source="humaneval",
)

WITH_SETUP = Problem(
    task_id="mbpp/927", prompt="Write a function to find the height of the given binary tree.",
    entry_point="max_height", public_tests=("assert (max_height(root)) == 3",), private_tests=(),
    setup_code="root = Node(1) \r\nroot.left = Node(2) ", solution="def max_height(node):\n\treturn 0")

CORRECT = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))"
BUGGY = "def similar_elements(a, b):\n    return 1 / 0"


def fenced(code: str, prose: str = "Here is the code.") -> str:
    return f"{prose}\n```python\n{code}\n```\n"


# ------------------------------------------------------------------------------------------------ extraction

@pytest.mark.parametrize(("reply", "code", "method"), [
    ("Sure:\n```python\ndef f(x):\n    return x\n```\nDone.", "def f(x):\n    return x", "fenced-python"),
    ("```py\nx = 1\n```", "x = 1", "fenced-py"),
    ("```Python\nx = 1\n```", "x = 1", "fenced-python"),
    ("```PYTHON3\nx = 1\n```", "x = 1", "fenced-python"),
    ("```\nx = 1\n```", "x = 1", "fenced-bare"),
    ("~~~python\nx = 1\n~~~", "x = 1", "fenced-python"),
    ("1. The code:\n   ```python\n   def f():\n       return 1\n   ```", "def f():\n    return 1",
     "fenced-python"),
    ("```python\ndef f():\n    return 1```\nDone.", "def f():\n    return 1", "fenced-python"),
    ("```python\ns = '```'\n```", "s = '```'", "fenced-python"),
])
def test_fenced_blocks(reply: str, code: str, method: str) -> None:
    extraction = extract_code(reply)
    assert (extraction.code, extraction.method) == (code, method)


def test_first_of_two_python_blocks_wins() -> None:
    extraction = extract_code("```python\na = 1\n```\nor maybe\n```python\nb = 2\n```")
    assert extraction.code == "a = 1"
    assert "2 code block" in extraction.note


def test_python_tagged_block_beats_an_earlier_bare_one() -> None:
    """A bare block before the answer is usually sample output; the reference only ever reads ```python."""
    assert extract_code("Output:\n```\n[1, 2]\n```\n```python\nb = 2\n```").code == "b = 2"


def test_unterminated_fence_after_1000_tokens_keeps_the_code() -> None:
    """A reply cut at the token limit: the reference ran an empty program; we keep what was written."""
    code_lines = [f"    total_{i} = compute(value_{i}, {i}) + offset  # step {i}" for i in range(120)]
    body = "def solve(values):\n" + "\n".join(code_lines) + "\n    result = [x for x in values if x >"
    reply = "Let me reason about the base cases first. " * 20 + "\n```python\n" + body
    extraction = extract_code(reply)
    assert extraction.method == "unterminated-fence"
    assert extraction.code == body
    assert len(reply) > 4 * 1000  # about 1000 tokens at ~4 characters per token


def test_unfenced_reply_that_parses_is_used_verbatim() -> None:
    code = "import math\n\ndef f(x):\n    return math.sqrt(x)"
    assert extract_code(code + "\n\n") == extract_code(code)
    assert (extract_code(code).code, extract_code(code).method) == (code, "unfenced")


def test_prose_and_unfenced_code_salvages_the_code() -> None:
    reply = "Here is my solution:\n\ndef add(a, b):\n    return a + b\n\nThis function adds two numbers."
    extraction = extract_code(reply)
    assert (extraction.code, extraction.method) == ("def add(a, b):\n    return a + b", "salvaged")


def test_stray_closing_fence_does_not_hide_the_code() -> None:
    reply = "def f():\n    return 1\n```\nThat is all."
    assert extract_code(reply).code == "def f():\n    return 1"


@pytest.mark.parametrize("reply", [
    "I think the answer is to add the two numbers together.",
    "Hello",  # parses as Python, but a bare name is prose, not a program
    "",
    "   \n\n",
    "```python\n```",
    "```python\n   \n```",
    "```java\nint x = 1;\n```",
    "from the examples we can see that it works.",
])
def test_no_code_gives_none_and_a_reason(reply: str) -> None:
    extraction = extract_code(reply)
    assert extraction.code is None
    assert extraction.method == "none"
    assert extraction.note


def test_extraction_strips_only_outer_blank_lines_and_trailing_whitespace() -> None:
    reply = "```python\n\n\ndef f():   \n\treturn 1   \n\n```"
    assert extract_code(reply).code == "def f():   \n\treturn 1"


# ------------------------------------------------------------------------------------------------ prompts

MBPP_PAPER_PROMPT = """Write a Python function implementation for the following prompt:

Write a function to find the similar elements from the given two tuple lists.

Your code should satisfy these tests:

assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)

Please follow the following instructions:
- Reason about the problem and any base cases before writing the code.
- You must return the implementation code in the following format:
```python
<CODE GOES HERE>
```
- You must only return a single code block since we only parse the first code block.
- Do not include any tests in your code - we will run the suite and return any error feedback.
- Include relevant import statements.
"""

MBPP_SHORT_PROMPT = """Write a Python function implementation for the following prompt:

Write a function to find the similar elements from the given two tuple lists.

Your code should satisfy these tests:

assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)

Return only the implementation code, no tests or explanations. Be sure to include the relevant import statements:
```python
code
```
"""

MBPP_TESTLESS_PROMPT = """Write a Python function implementation for the following prompt:

Write a function to find the similar elements from the given two tuple lists.

Your code should use the following function definition:

def similar_elements(test_tup1, test_tup2):

""" + INSTRUCTIONS


def test_paper_template_is_the_default_and_exact() -> None:
    assert build_prompt(MBPP_LIKE) == MBPP_PAPER_PROMPT
    assert build_prompt(MBPP_LIKE, "paper") == MBPP_PAPER_PROMPT


def test_short_template_is_the_reference_commit0_text() -> None:
    assert build_prompt(MBPP_LIKE, "short") == MBPP_SHORT_PROMPT


def test_testless_template_shows_the_signature_not_the_tests() -> None:
    prompt = build_prompt(MBPP_LIKE, "testless")
    assert prompt == MBPP_TESTLESS_PROMPT
    assert "assert" not in prompt


def test_humaneval_prompts() -> None:
    paper = build_prompt(HUMANEVAL_LIKE)
    assert paper.startswith("Write a Python function implementation for the following prompt:\n\n"
                            "from typing import List\n\n\ndef has_close_elements(")
    assert '    False\n    """\n\nYour code should satisfy these tests:\n\n' \
           "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False\n\nPlease follow" in paper
    assert "2.8" not in paper  # private tests are never shown
    testless = build_prompt(HUMANEVAL_LIKE, "testless")
    assert ("Your code should use the following function definition:\n\n"
            "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n\n") in testless


def test_setup_code_comes_before_the_public_tests() -> None:
    assert "tests:\n\nroot = Node(1) \r\nroot.left = Node(2)\nassert (max_height(root)) == 3\n\n" \
        in build_prompt(WITH_SETUP)


def test_signature_falls_back_to_the_prompt_and_spans_lines() -> None:
    body_only = Problem("HumanEval/0", HE_PROMPT, "has_close_elements", ("assert 1",), (), solution=HE_BODY)
    assert function_signature(body_only) == \
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:"
    multi_line = Problem("t", "Write f.", "f", ("assert f(1)",), (), solution=(
        "import re\n\n\ndef helper():\n    pass\n\ndef f(\n    a: int,\n    key=lambda x: x,\n"
        ") -> dict[str, int]:\n    return {}\n"))
    assert function_signature(multi_line) == "def f(\n    a: int,\n    key=lambda x: x,\n) -> dict[str, int]:"
    tabs_crlf = Problem("t", "p", "min_cost", ("assert 1",), (),
                        solution="R = 3\r\ndef min_cost(cost, m, n): \r\n\treturn 0")
    assert function_signature(tabs_crlf) == "def min_cost(cost, m, n):"


def test_missing_signature_names_the_task() -> None:
    no_def = Problem("mbpp/999", "Write a function.", "absent", ("assert absent()",), (), solution="x = 1")
    with pytest.raises(ConfigError, match="mbpp/999"):
        build_prompt(no_def, "testless")


def test_template_errors() -> None:
    with pytest.raises(ConfigError, match="unknown prompt template 'fancy'"):
        build_prompt(MBPP_LIKE, "fancy")
    no_public = Problem("x/1", "Write f.", "f", (), ("assert f()",), solution="def f(): pass")
    with pytest.raises(ConfigError, match=r"x/1.*testless"):
        build_prompt(no_public)
    assert "def f():" in build_prompt(no_public, "testless")


# ------------------------------------------------------------------------------------------------ feedback

def test_feedback_message_puts_a_newline_after_the_prefix() -> None:
    assert feedback_message("Traceback ...\nAssertionError") == "Feedback:\nTraceback ...\nAssertionError"
    assert feedback_message(PASSED_FEEDBACK) == "Feedback:\nCode passed all tests"


def test_long_feedback_keeps_head_and_tail() -> None:
    text = "HEAD" + "x" * 5000 + "TAIL"
    capped = truncate_middle(text, 300)
    assert len(capped) <= 300
    assert capped.startswith("HEAD") and capped.endswith("TAIL")
    omitted = int(re.search(r"… (\d+) characters omitted …", capped).group(1))
    head, tail = capped.split(f"\n… {omitted} characters omitted …\n")
    assert len(head) + len(tail) + omitted == len(text)
    assert truncate_middle("short", 300) == "short"


# ------------------------------------------------------------------------------------------------ episodes

def result(*passed: bool, error: str = "Traceback ...\nAssertionError", duration: float = 0.5) -> ExecResult:
    """An ExecResult with one verdict per flag."""
    return ExecResult(tuple(TestVerdict(Status.PASSED) if ok else TestVerdict(Status.FAILED, error)
                            for ok in passed), duration=duration)


class FakeSandbox:
    """Returns canned results keyed by the program's code and records every run_many call."""

    def __init__(self, results: dict[str, ExecResult]) -> None:
        self.results = results
        self.calls: list[list] = []

    def run_many(self, jobs: list) -> list[ExecResult]:
        self.calls.append(list(jobs))
        return [self.results[job.code] for job in jobs]


def run_episode(problem: Problem, replies: list[str], sandbox,
                config: EpisodeConfig | None = None) -> Episode:
    episode = Episode.start(problem, config)
    for reply in replies:
        if episode.done:
            break
        step_episodes([episode], [reply], sandbox)
    return episode


def test_stops_at_the_first_public_pass_and_messages_alternate() -> None:
    sandbox = FakeSandbox({BUGGY: result(False, False, False, error="ZeroDivisionError"),
                           CORRECT: result(True, True, True)})
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY), fenced(CORRECT), fenced(CORRECT)], sandbox)
    assert episode.done and episode.success and episode.reward == 1
    assert [turn.number for turn in episode.turns] == [1, 2]
    assert [message["role"] for message in episode.messages] == ["user", "assistant", "user", "assistant"]
    assert episode.messages[0]["content"] == MBPP_PAPER_PROMPT
    assert episode.messages[1]["content"] == fenced(BUGGY)
    assert episode.messages[2]["content"] == "Feedback:\nZeroDivisionError"
    assert episode.messages[3]["content"] == fenced(CORRECT)


def test_public_pass_with_private_failure_stops_and_scores_zero() -> None:
    sandbox = FakeSandbox({BUGGY: result(True, False, True)})
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY)] * 3, sandbox)
    assert episode.done and len(episode.turns) == 1
    assert episode.turns[0].public_passed and not episode.turns[0].private_passed
    assert not episode.success and episode.reward == 0


def test_oracle_stop_continues_until_private_tests_pass() -> None:
    sandbox = FakeSandbox({BUGGY: result(True, False, True), CORRECT: result(True, True, True)})
    config = EpisodeConfig(stop_on="oracle")
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY), fenced(CORRECT)], sandbox, config)
    assert len(episode.turns) == 2 and episode.done and episode.success
    # Only the public channel is shown, so the model reads "passed" although the code was wrong.
    assert episode.messages[2]["content"] == "Feedback:\nCode passed all tests"


def test_turn_limit_scores_the_last_turn() -> None:
    sandbox = FakeSandbox({BUGGY: result(False, True, True)})
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY)] * 5, sandbox, EpisodeConfig(max_turns=3))
    assert episode.done and len(episode.turns) == 3 and not episode.success
    roles = [message["role"] for message in episode.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    with pytest.raises(ValueError, match="already done: mbpp/2"):
        step_episodes([episode], [fenced(CORRECT)], sandbox)


def test_reply_without_code_is_not_run() -> None:
    sandbox = FakeSandbox({})
    episode = Episode.start(MBPP_LIKE)
    (turn,) = step_episodes([episode], ["I am not sure how to solve this."], sandbox)
    assert sandbox.calls == []
    assert turn.code is None and turn.extraction == "none" and turn.duration == 0
    assert not turn.public_passed and not turn.private_passed
    verdicts = turn.public + turn.private
    assert all(v.status is Status.FAILED and v.error == NO_CODE_FEEDBACK for v in verdicts)
    assert episode.messages[-1]["content"] == "Feedback:\n" + NO_CODE_FEEDBACK


def test_a_batch_runs_in_one_sandbox_call_with_all_tests_in_order() -> None:
    sandbox = FakeSandbox({BUGGY: result(False, False, False), CORRECT: result(True, True, True),
                           "def max_height(n):\n    return 3": result(True)})
    episodes = [Episode.start(MBPP_LIKE), Episode.start(MBPP_LIKE), Episode.start(WITH_SETUP),
                Episode.start(HUMANEVAL_LIKE)]
    replies = [fenced(BUGGY), fenced(CORRECT), fenced("def max_height(n):\n    return 3"), "no idea"]
    turns = step_episodes(episodes, replies, sandbox)
    assert len(sandbox.calls) == 1 and len(sandbox.calls[0]) == 3
    first, _, setup_job = sandbox.calls[0]
    assert tuple(first.tests) == MBPP_LIKE.public_tests + MBPP_LIKE.private_tests
    assert (setup_job.setup, setup_job.prelude) == (WITH_SETUP.setup_code, WITH_SETUP.prelude)
    assert [turn.passed for turn in turns] == [False, True, True, False]
    assert [episode.done for episode in episodes] == [False, True, True, False]
    assert [len(turn.public) for turn in turns] == [1, 1, 1, 1]
    assert [len(turn.private) for turn in turns] == [2, 2, 0, 1]


def test_humaneval_prelude_travels_with_the_job() -> None:
    code = "def has_close_elements(numbers, threshold):\n    return False"
    sandbox = FakeSandbox({code: result(True, False)})
    (candidate,) = evaluate_candidates([(HUMANEVAL_LIKE, fenced(code))], sandbox)
    assert sandbox.calls[0][0].prelude == HUMANEVAL_LIKE.prelude
    assert candidate.public_passed and not candidate.private_passed


def test_feedback_is_capped_in_the_message_but_kept_whole_in_the_turn() -> None:
    long_error = "Traceback (most recent call last):\n" + "  frame\n" * 500 + "RecursionError: too deep"
    sandbox = FakeSandbox({BUGGY: result(False, False, False, error=long_error)})
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY)], sandbox, EpisodeConfig(feedback_max_chars=300))
    message = episode.messages[-1]["content"]
    assert message.startswith("Feedback:\nTraceback") and message.endswith("RecursionError: too deep")
    assert len(message) <= len("Feedback:\n") + 300
    assert episode.turns[0].feedback == long_error


def test_best_of_n_evaluates_without_advancing_then_commits_one() -> None:
    sandbox = FakeSandbox({BUGGY: result(False, False, False), CORRECT: result(True, True, True)})
    episode = Episode.start(MBPP_LIKE)
    candidates = evaluate_candidates([(MBPP_LIKE, fenced(code)) for code in (BUGGY, CORRECT, BUGGY)], sandbox)
    assert len(sandbox.calls) == 1 and episode.turns == [] and len(episode.messages) == 1
    chosen = next(candidate for candidate in candidates if candidate.public_passed)
    turn = episode.advance(chosen)
    assert isinstance(turn, Turn) and turn.number == 1 and turn.code == CORRECT
    assert episode.done and episode.success
    with pytest.raises(ValueError, match="HumanEval/0"):
        Episode.start(HUMANEVAL_LIKE).advance(chosen)


def test_records_round_trip_through_json() -> None:
    sandbox = FakeSandbox({BUGGY: result(False, True, True), CORRECT: result(True, True, True)})
    episode = run_episode(MBPP_LIKE, [fenced(BUGGY), "nothing", fenced(CORRECT)], sandbox,
                          EpisodeConfig(max_turns=4, template="short"))
    data = json.loads(json.dumps(episode.to_dict()))
    assert data["success"] is True and data["task_id"] == "mbpp/2"
    restored = Episode.from_dict(data, MBPP_LIKE)
    assert restored == episode
    assert [turn.extraction for turn in restored.turns] == ["fenced-python", "none", "fenced-python"]
    first = {key: value for key, value in data["turns"][0].items() if key != "number"}
    candidate = CandidateResult.from_dict(first)
    assert Turn.from_candidate(candidate, 1) == episode.turns[0]
    with pytest.raises(ValueError, match="HumanEval/0"):
        Episode.from_dict(data, HUMANEVAL_LIKE)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("max_turns", 0, "max_turns"), ("max_turns", 2.5, "max_turns"), ("template", "nope", "template"),
    ("stop_on", "private", "stop_on"), ("feedback_max_chars", 10, "feedback_max_chars"),
])
def test_config_validation_names_the_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EpisodeConfig(**{field: value})


def test_config_from_dict_rejects_unknown_fields() -> None:
    assert EpisodeConfig.from_dict(EpisodeConfig(max_turns=6).to_dict()) == EpisodeConfig(max_turns=6)
    with pytest.raises(ConfigError, match="max_steps"):
        EpisodeConfig.from_dict({"max_steps": 3})


def test_wrong_verdict_count_is_a_sandbox_error() -> None:
    sandbox = FakeSandbox({CORRECT: result(True)})
    with pytest.raises(SandboxError, match="1 verdicts for 3 tests"):
        evaluate_candidates([(MBPP_LIKE, fenced(CORRECT))], sandbox)


# ----------------------------------------------------------------------------------------------- real sandbox

@pytest.fixture(scope="module")
def real_sandbox():
    try:
        from mucode.sandbox import Sandbox

        sandbox = Sandbox()
        sandbox.start()
    except (ImportError, NotImplementedError) as error:
        pytest.skip(f"mucode.sandbox.Sandbox is not available yet: {error!r}")
    with sandbox:
        yield sandbox


def test_real_sandbox_feedback_names_solution_and_test_files(real_sandbox) -> None:
    buggy = "def similar_elements(a, b):\n    common = set(a) & set(b)\n    return len(common) / 0"
    episode = Episode.start(MBPP_LIKE)
    (turn,) = step_episodes([episode], [fenced(buggy)], real_sandbox)
    assert not turn.public_passed and not turn.private_passed
    feedback = episode.messages[-1]["content"]
    assert feedback.startswith("Feedback:\nTraceback")
    assert 'File "test.py", line 1' in feedback and 'File "solution.py", line 3' in feedback
    assert "ZeroDivisionError" in feedback
    assert set(re.findall(r'File "([^"]+)"', feedback)) == {"solution.py", "test.py"}
    assert "/tmp" not in feedback and "/home" not in feedback
    (turn,) = step_episodes([episode], [fenced(CORRECT)], real_sandbox)
    assert turn.passed and episode.done and episode.success
    assert turn.duration > 0


def test_real_sandbox_runs_prelude_and_reports_syntax_errors(real_sandbox) -> None:
    good = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + HE_BODY
    broken = "def f(x)\n  pass"
    pairs = [(HUMANEVAL_LIKE, fenced(good)), (HUMANEVAL_LIKE, fenced(broken))]
    results = evaluate_candidates(pairs, real_sandbox)
    assert results[0].passed
    assert not results[1].public_passed and "SyntaxError" in results[1].feedback
    assert 'File "solution.py", line 1' in results[1].feedback
