"""Frozen records shared by every layer: problems and execution results.

They hold data only; loading lives in `mucode.problems`, execution in `mucode.sandbox`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

PASSED_FEEDBACK = "Code passed all tests"


@dataclass(frozen=True, slots=True)
class Problem:
    """One programming task.

    Tests are Python snippets (usually one ``assert`` each) so that every test gets its own verdict.
    The program that runs is: ``prelude`` + candidate code, then ``setup_code``, then each test.
    """

    task_id: str
    prompt: str
    entry_point: str | None
    public_tests: tuple[str, ...]
    private_tests: tuple[str, ...]
    setup_code: str = ""
    solution: str | None = None
    #: Code run before the candidate's program (a HumanEval prompt's imports and helper functions).
    prelude: str = ""
    #: Where the problem came from (``mbpp``, ``humaneval``, a file path); informational.
    source: str = ""

    @property
    def all_tests(self) -> tuple[str, ...]:
        """Public tests first, then private ones: the order in which they run and are reported."""
        return self.public_tests + self.private_tests


class TestStatus(StrEnum):
    """Outcome of one test. Anything but PASSED counts as a failure."""

    __test__ = False  # not a pytest class

    PASSED = "passed"
    FAILED = "failed"  # an assertion or an exception; `error` holds the traceback
    TIMEOUT = "timeout"  # the test (or the whole program) ran past its time limit
    CRASHED = "crashed"  # the process died (segfault, memory limit, os._exit, killed) during this test
    NOT_RUN = "not_run"  # the process was gone before this test started


@dataclass(frozen=True, slots=True)
class TestVerdict:
    """The verdict on one test snippet."""

    __test__ = False  # not a pytest class

    status: TestStatus
    error: str = ""
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status is TestStatus.PASSED


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Everything the sandbox learned from running one program against its tests.

    ``program_error`` is set when the candidate program itself failed before any test ran (syntax error,
    exception at import time); then every verdict is FAILED with that same error.
    """

    verdicts: tuple[TestVerdict, ...]
    program_error: str = ""
    output: str = ""  # the program's stdout and stderr, interleaved and capped
    duration: float = 0.0
    isolation: str = ""  # which isolation layers were active, e.g. "user,net,mount,pid,cgroup"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def passed(self) -> bool:
        """True iff the program loaded and every test passed (vacuously true for an empty test list)."""
        return not self.program_error and all(v.passed for v in self.verdicts)

    def select(self, start: int, stop: int | None = None) -> ExecResult:
        """The result restricted to tests ``start:stop`` (e.g. the public or the private ones)."""
        return ExecResult(self.verdicts[start:stop], self.program_error, self.output, self.duration,
                          self.isolation, self.extra)

    @property
    def feedback(self) -> str:
        """Text for the model: the pass message, or the program error, or each failing test's error."""
        if self.passed:
            return PASSED_FEEDBACK
        if self.program_error:
            return self.program_error
        errors = [v.error or v.status.value for v in self.verdicts if not v.passed]
        return "\n\n".join(errors)
