"""Fixtures for sandbox tests: a fully isolated sandbox with small limits, and containment probes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mucode.errors import SandboxError
from mucode.sandbox import Limits, Sandbox
from mucode.sandbox.executor import UID_BASE

SMALL = Limits(test_timeout=2.0, memory_mb=512, max_processes=32, file_size_mb=8, disk_mb=16,
               output_bytes=8192, startup_slack=1.0)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One isolated sandbox per module; hostile tests must never run without isolation."""
    box = Sandbox(SMALL, workers=2, isolation="full")
    try:
        box.start()
    except SandboxError as error:
        pytest.skip(f"full isolation unavailable on this machine: {error}")
    yield box
    box.close()


def _status(pid: str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.split(":", 1) for line in handle if ":" in line)


def sandbox_processes(executor_pid: int) -> list[int]:
    """Host pids of program processes (sandbox uids) descended from this executor."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_status(entry)["Uid"].split()[0]) < UID_BASE:
                continue
            pid = entry
            while pid not in ("0", "1", str(executor_pid)):
                pid = _status(pid)["PPid"].strip()
        except (OSError, KeyError):
            continue
        if pid == str(executor_pid):
            found.append(int(entry))
    return found


def assert_no_leftovers(box: Sandbox, timeout: float = 3.0) -> None:
    """Every process a program started is gone shortly after its result came back."""
    if os.geteuid() != 0:
        return  # programs then run as the host user: they cannot be told apart from ours
    executor = box._process.pid
    deadline = time.monotonic() + timeout
    while sandbox_processes(executor) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes(executor) == []


def assert_healthy(box: Sandbox) -> None:
    """The executor survived and still judges programs correctly."""
    result = box.run("def f():\n    return 1\n", ["assert f() == 1", "assert f() == 2"])
    assert [v.status.value for v in result.verdicts] == ["passed", "failed"], result
