"""Run untrusted programs against tests: isolated, limited, one verdict per test.

    from mucode.sandbox import Sandbox, Job, Limits
    with Sandbox(Limits(test_timeout=3.0)) as sandbox:
        result = sandbox.run(code, ["assert f(1) == 2"])            # -> ExecResult
        results = sandbox.run_many([Job(code, tests), ...])          # concurrent, order preserved

The program that runs is ``prelude`` + ``code`` (compiled as ``solution.py``, so tracebacks name the
candidate's own lines), then ``setup``, then each test (compiled as ``test.py``) with its own verdict.
See docs/sandbox.md for the isolation layers and the threat model.
"""

from mucode.sandbox.core import Job, Limits, Sandbox, default_sandbox

__all__ = ["Job", "Limits", "Sandbox", "default_sandbox"]
