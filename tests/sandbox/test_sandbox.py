"""Ordinary sandbox behaviour: verdicts, tracebacks, ordering, limits, fallback, recovery."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mucode.errors import ConfigError, SandboxError
from mucode.sandbox import Job, Limits, Sandbox
from mucode.types import PASSED_FEEDBACK, TestStatus

from .conftest import SMALL

CODE = "def add(a, b):\n    if a < 0:\n        raise ValueError('negative')\n    return a + b\n"


def test_each_test_gets_its_own_verdict(sandbox):
    result = sandbox.run(CODE, ["assert add(1, 2) == 3", "assert add(1, 1) == 3", "assert add(-1, 1) == 0"])
    assert [v.status for v in result.verdicts] == [TestStatus.PASSED, TestStatus.FAILED, TestStatus.FAILED]
    assert not result.passed
    assert result.select(0, 1).passed
    assert result.select(0, 1).feedback == PASSED_FEEDBACK


def test_traceback_names_the_candidates_own_lines(sandbox):
    result = sandbox.run(CODE, ["assert add(-1, 1) == 0"])
    error = result.verdicts[0].error
    assert error.startswith("Traceback (most recent call last):")
    assert 'File "test.py", line 1, in <module>' in error
    assert 'File "solution.py", line 3, in add' in error  # the raise is on line 3 of the candidate's code
    assert "raise ValueError('negative')" in error
    assert error.rstrip().endswith("ValueError: negative")
    assert "executor.py" not in error and "/tmp" not in error


def test_syntax_error_is_a_program_error_with_its_line(sandbox):
    result = sandbox.run("def f(:\n    pass\n", ["assert f() is None", "assert True"])
    assert not result.passed
    assert 'File "solution.py", line 1' in result.program_error
    assert "SyntaxError" in result.program_error
    assert [v.status for v in result.verdicts] == [TestStatus.FAILED, TestStatus.FAILED]
    assert result.feedback == result.program_error


def test_prelude_runs_before_and_setup_after_the_code(sandbox):
    prelude = "from typing import List\nHELPER = 10\n"
    code = "def f(xs: List[int]) -> int:\n    return sum(xs) + HELPER\n"
    setup = "EXPECTED = f([1, 2])\n"
    result = sandbox.run(code, ["assert f([1]) == 11", "assert EXPECTED == 13"], prelude=prelude, setup=setup)
    assert result.passed


def test_main_guard_does_not_run(sandbox):
    result = sandbox.run("x = 1\nif __name__ == '__main__':\n    x = input()\n", ["assert x == 1"])
    assert result.passed


def test_a_slow_test_times_out_and_the_next_still_runs(sandbox):
    result = sandbox.run("import time\n", ["time.sleep(30)", "assert 1 + 1 == 2"])
    assert [v.status for v in result.verdicts] == [TestStatus.TIMEOUT, TestStatus.PASSED]
    assert "did not finish within 2 seconds" in result.verdicts[0].error


def test_infinite_loop_while_loading_is_a_timeout(sandbox):
    result = sandbox.run("while True:\n    pass\n", ["assert True"])
    assert [v.status for v in result.verdicts] == [TestStatus.TIMEOUT]
    assert "TimeoutError" in result.program_error


def test_output_is_captured(sandbox):
    result = sandbox.run("print('hello')\n", ["import sys; print('err', file=sys.stderr)"])
    assert result.passed
    assert "hello" in result.output and "err" in result.output


def test_empty_test_list_passes_vacuously_only_if_the_program_loads(sandbox):
    assert sandbox.run("x = 1\n", []).passed
    assert not sandbox.run("raise RuntimeError('boom')\n", []).passed


def test_run_many_keeps_order_under_concurrency(sandbox):
    jobs = [Job(f"def f():\n    return {i}\n", [f"assert f() == {i}", f"assert f() == {i + 1}"]) for i in range(40)]
    results = sandbox.run_many(jobs)
    assert all([v.status for v in r.verdicts] == [TestStatus.PASSED, TestStatus.FAILED] for r in results)


def test_submit_is_thread_safe(sandbox):
    results: dict[int, bool] = {}

    def worker(i: int) -> None:
        results[i] = sandbox.submit(Job(f"v = {i}\n", [f"assert v == {i}"])).result().passed

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: True for i in range(16)}


def test_per_job_limits_override_the_sandbox_limits(sandbox):
    quick = Limits(test_timeout=0.5, memory_mb=512, startup_slack=0.5)
    start = time.monotonic()
    result = sandbox.submit(Job("import time\n", ["time.sleep(5)"], limits=quick)).result()
    assert result.verdicts[0].status is TestStatus.TIMEOUT
    assert time.monotonic() - start < 3


def test_isolation_layers_are_reported(sandbox):
    layers = sandbox.isolation.split(",")
    assert {"user", "net", "mount", "pid"} <= set(layers)
    assert sandbox.run("", ["assert True"]).isolation == sandbox.isolation


def test_invalid_limits_name_the_field():
    with pytest.raises(ConfigError, match="test_timeout"):
        Limits(test_timeout=0)
    with pytest.raises(ConfigError, match="isolation"):
        Sandbox(isolation="maybe")


def test_without_isolation_verdicts_and_timeouts_still_work():
    with Sandbox(SMALL, workers=2, isolation="none") as box:
        assert box.isolation == "none"
        result = box.run(CODE, ["assert add(1, 2) == 3", "assert add(1, 2) == 4", "import time; time.sleep(9)"])
        assert [v.status for v in result.verdicts] == [TestStatus.PASSED, TestStatus.FAILED, TestStatus.TIMEOUT]
        assert "solution.py" not in result.verdicts[1].error  # the failing line is the test's own
        assert 'File "test.py", line 1' in result.verdicts[1].error


def test_a_killed_executor_is_restarted_and_in_flight_jobs_fail_cleanly():
    with Sandbox(SMALL, workers=1, isolation="full") as box:
        future = box.submit(Job("import time\n", ["time.sleep(5)"]))
        time.sleep(0.3)
        os.kill(box._process.pid, signal.SIGKILL)
        with pytest.raises(SandboxError):
            future.result(timeout=10)
        assert box.run("", ["assert True"]).passed


def test_large_jobs_and_results_in_flight_do_not_deadlock(sandbox):
    # Job messages far bigger than a pipe buffer, while results (big outputs) stream back at the same time.
    big = "DATA = " + repr("a" * 300_000) + "\nprint(DATA[:8000])\nassert len(DATA) == 300_000"
    futures = [sandbox.submit(Job("", [big])) for _ in range(60)]
    assert all(future.result(timeout=120).passed for future in futures)
