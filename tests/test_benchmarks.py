"""The benchmark scripts still run against the current package: each parses its options and imports what it uses
(a renamed function once broke one silently; the benchmarks themselves are too slow for the test suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert {path.name for path in BENCHMARKS} >= {"generation_throughput.py", "verifier_throughput.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_imports_and_parses_its_options(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
