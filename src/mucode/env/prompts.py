"""The first user message of an episode: one of three named templates filled from a `Problem`.

There is no system prompt; the backend applies the model's own chat template later. The texts are
constants so that docs/episode.md can quote them and tests can pin them (see docs/method.md §2.2).
"""

from __future__ import annotations

import io
import re
import textwrap
import tokenize
from collections.abc import Callable

from mucode.errors import ConfigError
from mucode.types import Problem

#: The instruction list of the paper's prompt (App. C.1.1) and of the reference's testless prompt.
INSTRUCTIONS = """Please follow the following instructions:
- Reason about the problem and any base cases before writing the code.
- You must return the implementation code in the following format:
```python
<CODE GOES HERE>
```
- You must only return a single code block since we only parse the first code block.
- Do not include any tests in your code - we will run the suite and return any error feedback.
- Include relevant import statements.
"""

#: "paper" (default): the camera-ready paper's template, App. C.1.1.
PAPER_TEMPLATE = """Write a Python function implementation for the following prompt:

{prompt}

Your code should satisfy these tests:

{tests}

""" + INSTRUCTIONS

#: "short": the released code's `commit0_utils.generate_prompt`, which its scripts use.
SHORT_TEMPLATE = """Write a Python function implementation for the following prompt:

{prompt}

Your code should satisfy these tests:

{tests}

Return only the implementation code, no tests or explanations. Be sure to include the relevant import statements:
```python
code
```
"""

#: "testless": the released code's `generate_testless_prompt`: no tests, only the signature (POMDP setting).
TESTLESS_TEMPLATE = """Write a Python function implementation for the following prompt:

{prompt}

Your code should use the following function definition:

{signature}

""" + INSTRUCTIONS

DEFAULT_TEMPLATE = "paper"

#: What the templates' example code blocks hold: a reply whose code is one of these echoed the prompt back.
PLACEHOLDERS = ("<CODE GOES HERE>", "code")


def echoes_placeholder(code: str) -> bool:
    """Whether extracted code is only a template's placeholder (the 0.5B often answers with the format
    example itself): no program at all, however the tests grade it."""
    return code.strip() in PLACEHOLDERS


def shown_tests(problem: Problem) -> str:
    """The test block a prompt shows: setup code (if any), then the public tests, one per line.

    Unlike the reference, an empty setup does not leave a leading blank line, and only the public tests are
    shown (the reference shows HumanEval's whole `example_test`, private asserts included; docs/method.md §2.2).
    """
    if not problem.public_tests:
        raise ConfigError(f"problem {problem.task_id!r} has no public tests to show in the prompt; "
                          "use template 'testless'")
    setup = [problem.setup_code.rstrip()] if problem.setup_code.strip() else []
    return "\n".join(setup + [test.rstrip() for test in problem.public_tests])


def function_signature(problem: Problem) -> str:
    """The `def <entry_point>(...):` header the testless prompt asks the model to use.

    Looked up in the reference solution first, then in the prompt (HumanEval prompts are code). Without an
    entry point the first function defined is used, as the reference's regex does.
    """
    for source in (problem.solution or "", problem.prompt):
        header = _def_header(source, problem.entry_point)
        if header:
            return header
    raise ConfigError(f"problem {problem.task_id!r}: no `def {problem.entry_point or '<name>'}(...)` line in "
                      "its solution or prompt, so the testless template has no signature to show")


def _def_header(source: str, name: str | None) -> str | None:
    """The header of the first `def name(` in source, up to its colon, across lines; None if absent."""
    source = source.replace("\r\n", "\n")
    name_pattern = re.escape(name) if name else r"\w+"
    pattern = rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{name_pattern}[ \t]*\("
    match = re.search(pattern, source, re.MULTILINE)
    if match is None:
        return None
    rest = source[match.start():]
    end = _header_end(rest)
    if end is None:
        return None
    return textwrap.dedent(rest[:end]).strip()


def _header_end(code: str) -> int | None:
    """Offset just past the colon that ends the `def` header at the start of code (brackets balanced)."""
    line_starts = [0] + [newline.end() for newline in re.finditer("\n", code)]
    depth = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type != tokenize.OP:
                continue
            if token.string in "([{":
                depth += 1
            elif token.string in ")]}":
                depth -= 1
            elif token.string == ":" and depth == 0:
                row, col = token.end
                return line_starts[row - 1] + col
    except (tokenize.TokenError, IndentationError):
        return None
    return None


def _paper(problem: Problem) -> str:
    return PAPER_TEMPLATE.format(prompt=problem.prompt.strip(), tests=shown_tests(problem))


def _short(problem: Problem) -> str:
    return SHORT_TEMPLATE.format(prompt=problem.prompt.strip(), tests=shown_tests(problem))


def _testless(problem: Problem) -> str:
    return TESTLESS_TEMPLATE.format(prompt=problem.prompt.strip(), signature=function_signature(problem))


TEMPLATES: dict[str, Callable[[Problem], str]] = {"paper": _paper, "short": _short, "testless": _testless}


def check_template(name: str) -> None:
    """Raise ConfigError unless name is a known template, so a typo fails before any generation."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown prompt template {name!r}; choose one of {', '.join(TEMPLATES)}")


def build_prompt(problem: Problem, template: str = DEFAULT_TEMPLATE) -> str:
    """The first user message for problem under the named template."""
    check_template(template)
    return TEMPLATES[template](problem)
