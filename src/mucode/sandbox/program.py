"""The program side of the sandbox: a fresh interpreter that runs one candidate program and its tests.

`mucode.sandbox.executor` forks a child per program, isolates it (namespaces, cgroup, rlimits, unprivileged
uid, no capabilities, no new privileges, seccomp) and then *executes this source* in it (``python -I -S -c``),
so the program starts from a clean image: nothing of the slot server's memory, which held earlier candidates'
code, tests and output, survives into it.

This runs once per program, so it imports only built-in modules at start (``signal`` would import ``enum``,
``json`` would import ``re``: milliseconds each); ``traceback`` is imported when a test fails.

Protocol: fd 4 holds one message, a 4-byte big-endian length then the job as `marshal` data (written by the
trusted slot server); fd 3 is the verdict channel, one JSON line per event, each carrying the nonce; fds 1
and 2 are the program's output.
"""

from __future__ import annotations

import _json
import _signal
import marshal
import os
import sys
import time

#: The filename of this harness's frames in tracebacks (run as ``python -c``: "<string>"), which are removed.
HARNESS = globals().get("__file__", "<string>")
JOB_FD, CHANNEL_FD = 4, 3
#: Sources by the filename they run under, for the traceback's source lines.
SOURCES: dict[str, str] = {}


class TestTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout


def format_exception(exc: BaseException) -> str:
    """A normal Python traceback with the harness's own frames removed."""
    import linecache
    import traceback

    for filename, source in SOURCES.items():
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    te = traceback.TracebackException.from_exception(exc)
    _strip_harness(te, set(), traceback)
    return "".join(te.format()).rstrip("\n")


def _strip_harness(te, seen: set[int], traceback) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != HARNESS])
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _strip_harness(chained, seen, traceback)


def _timed_exec(source: str, filename: str, namespace: dict, timeout: float) -> tuple[str, str]:
    """Compile and run ``source``; return (status, error text) with status passed/failed/timeout."""
    SOURCES[filename] = source
    _signal.setitimer(_signal.ITIMER_REAL, timeout)
    try:
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)
        status, error = "passed", ""
    except TestTimeout:
        status, error = "timeout", f"TimeoutError: the test did not finish within {timeout:g} seconds"
    except BaseException as exc:  # the traceback is the feedback, so every exception becomes text
        status, error = "failed", format_exception(exc)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    return status, error


def json_line(fields: dict) -> bytes:
    """One JSON object of str, int and float values, as a line (what the executor's reader parses)."""
    items = (f"{_json.encode_basestring_ascii(key)}: "
             f"{_json.encode_basestring_ascii(value) if isinstance(value, str) else repr(value)}"
             for key, value in fields.items())
    return ("{" + ", ".join(items) + "}\n").encode()


def run_tests(job: dict, channel: int, nonce: str) -> None:
    """Run prelude + code + setup, then each test; write one JSON line per event to ``channel``.

    Each record carries the slot's per-program nonce, so blind writes to the channel are ignored.
    """
    def record(**fields) -> None:
        os.write(channel, json_line({"n": nonce, **fields}))

    _signal.signal(_signal.SIGALRM, _on_alarm)
    timeout = job["limits"]["test_timeout"]
    namespace: dict = {"__name__": "__solution__", "__builtins__": __builtins__}
    for source, filename in ((job["prelude"], "prelude.py"), (job["code"], "solution.py"),
                             (job["setup"], "setup.py")):
        if not source:
            continue
        status, error = _timed_exec(source, filename, namespace, timeout)
        if status != "passed":
            record(load=status, error=error)
            return
    record(load="passed")
    for index, test in enumerate(job["tests"]):
        start = time.perf_counter()
        status, error = _timed_exec(test, "test.py", namespace, timeout)
        record(i=index, s=status, e=error[-8000:], t=round(time.perf_counter() - start, 6))


def read_job(fd: int) -> dict:
    """The job message the slot server wrote to ``fd``."""
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError("the job message ended early")
        data += chunk
    return marshal.loads(data[4:])


def main() -> None:
    """Read the job, run it, exit 0 (the verdicts travel on the channel; the exit status is never a verdict)."""
    nonce = ""
    try:
        job = read_job(JOB_FD)
        os.close(JOB_FD)
        nonce = job["nonce"]
        sys.path.extend(path for path in job["site_paths"] if path not in sys.path)
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 (they live until the process exits)
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.argv = ["solution.py"]
        run_tests(job, CHANNEL_FD, nonce)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException as exc:  # a harness failure must still end this process, and say why
        try:  # noqa: SIM105 (contextlib is not imported here: it costs milliseconds per program)
            os.write(CHANNEL_FD, json_line({"n": nonce, "harness": format_exception(exc)}))
        except OSError:
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
