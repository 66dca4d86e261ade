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

Strict grading (``job["role"]``): two processes per program. The *candidate* runs the prelude, the code and
the setup, then answers calls; it never sees the tests, the verdict channel or the nonce. The *tester* runs
the tests with every function the candidate defined bound to a proxy: a call crosses to the candidate (each
process writes its lines on fd 6 and reads the other's on fd 5) and only plain data crosses (None, bool,
int, float, str, bytes and lists, tuples, dicts, sets of them). An always-equal object, patched builtins, a
stack read or a forged record in the candidate then change nothing the tester checks.
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


# ------------------------------------------------------------------------------------------ strict grading

#: Both strict processes read the other's lines on fd 5 and write theirs on fd 6.
IN_FD, OUT_FD = 5, 6
PLAIN = (type(None), bool, int, float, str)


class NotPlain(TypeError):
    """A value strict grading does not pass between the processes."""


def to_plain(value, where: str):
    """``value`` as JSON-ready data that keeps its type (tuples, sets, bytes and non-str keys tagged)."""
    if isinstance(value, PLAIN) and type(value) in PLAIN:
        return value
    kind = type(value)
    if kind is list:
        return [to_plain(item, where) for item in value]
    if kind is tuple:
        return {"tuple": [to_plain(item, where) for item in value]}
    if kind in (set, frozenset):
        return {kind.__name__: [to_plain(item, where) for item in value]}
    if kind is dict:
        return {"dict": [[to_plain(key, where), to_plain(item, where)] for key, item in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    raise NotPlain(f"strict grading passes only plain data (None, bool, int, float, str, bytes and lists, "
                   f"tuples, dicts, sets of them); {where} a {kind.__module__}.{kind.__qualname__}")


def from_plain(data):
    """The value `to_plain` encoded; anything else is a NotPlain (the bytes came from the candidate)."""
    if isinstance(data, PLAIN):
        return data
    if type(data) is list:
        return [from_plain(item) for item in data]
    if type(data) is dict and len(data) == 1:
        (tag, inner), = data.items()
        if tag == "bytes" and type(inner) is str:
            return bytes.fromhex(inner)
        if type(inner) is list:
            if tag == "tuple":
                return tuple(from_plain(item) for item in inner)
            if tag in ("set", "frozenset"):
                return (set if tag == "set" else frozenset)(from_plain(item) for item in inner)
            if tag == "dict":
                return {from_plain(key): from_plain(item) for key, item in inner}
    raise NotPlain("the candidate answered with data strict grading does not accept")


def _send(fd: int, message: dict) -> None:
    import json

    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


class _Lines:
    """JSON lines read from a pipe (the other process may be hostile: any bytes are a NotPlain)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def read(self) -> dict:
        import json

        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("the other process closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except Exception:  # any bytes at all may arrive here
            raise NotPlain("the candidate answered with bytes that are not a message") from None
        if type(message) is not dict:
            raise NotPlain("the candidate answered with bytes that are not a message")
        return message


def serve_calls(job: dict) -> None:
    """The candidate: load the program, say which functions it defines, then answer calls until EOF."""
    import json  # noqa: F401 (imported before the candidate's code runs: that code may break imports)

    _signal.signal(_signal.SIGALRM, _on_alarm)
    timeout = job["limits"]["test_timeout"]
    namespace: dict = {"__name__": "__solution__", "__builtins__": __builtins__}
    for source, filename in ((job["prelude"], "prelude.py"), (job["code"], "solution.py"),
                             (job["setup"], "setup.py")):
        if source:
            status, error = _timed_exec(source, filename, namespace, timeout)
            if status != "passed":
                _send(OUT_FD, {"load": status, "error": error})
                return
    names = [name for name, value in namespace.items()
             if callable(value) and not name.startswith("__") and type(value).__name__ != "module"]
    _send(OUT_FD, {"load": "passed", "names": names})
    requests = _Lines(IN_FD)
    while True:
        try:
            request = requests.read()
        except EOFError:
            return
        _send(OUT_FD, _answer(namespace, request, timeout))


def _answer(namespace: dict, request: dict, timeout: float) -> dict:
    _signal.setitimer(_signal.ITIMER_REAL, timeout)
    try:
        args = [from_plain(item) for item in request["args"]]
        kwargs = {key: from_plain(item) for key, item in request["kwargs"].items()}
        result = namespace[request["name"]](*args, **kwargs)
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        return {"value": to_plain(result, f"{request['name']}() returned")}
    except TestTimeout:
        return {"error": f"TimeoutError: the call did not finish within {timeout:g} seconds"}
    except BaseException as exc:  # the candidate's exception, as text: it becomes the test's feedback
        return {"error": format_exception(exc)}
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


class CandidateError(Exception):
    """The candidate's function raised; the message is its traceback, as the candidate's process printed it."""


def run_strict_tests(job: dict, channel: int, nonce: str) -> None:
    """The tester: wait for the candidate to load, bind a proxy per function it defines, run the tests."""
    def record(**fields) -> None:
        os.write(channel, json_line({"n": nonce, **fields}))

    replies = _Lines(IN_FD)
    stuck = []

    def proxy(name: str):
        def call(*args, **kwargs):
            if stuck:
                raise CandidateError("the candidate is still busy with a call that timed out")
            request = {"name": name, "args": [to_plain(item, f"{name}() was called with") for item in args],
                       "kwargs": {key: to_plain(item, f"{name}() was called with") for key, item in kwargs.items()}}
            stuck.append(name)  # cleared when the reply arrives; a timeout here leaves it set
            _send(OUT_FD, request)
            reply = replies.read()
            stuck.clear()
            if "value" in reply:
                return from_plain(reply["value"])
            raise CandidateError(str(reply.get("error", "the candidate's call failed"))[-8000:])
        call.__name__ = call.__qualname__ = name
        return call

    _signal.signal(_signal.SIGALRM, _on_alarm)
    timeout = job["limits"]["test_timeout"]
    _signal.setitimer(_signal.ITIMER_REAL, timeout * 3 + 1)
    try:
        loaded = replies.read()
    except TestTimeout:
        record(load="timeout", error=f"TimeoutError: the program did not finish loading within {timeout:g} s")
        return
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    if loaded.get("load") != "passed":
        record(load="timeout" if loaded.get("load") == "timeout" else "failed", error=str(loaded.get("error")))
        return
    namespace: dict = {"__name__": "__solution__", "__builtins__": __builtins__}
    for source, filename in ((job["prelude"], "prelude.py"), (job["setup"], "setup.py")):
        if source:
            status, error = _timed_exec(source, filename, namespace, timeout)
            if status != "passed":
                record(load=status, error=error)
                return
    namespace.update({name: proxy(name) for name in loaded.get("names", []) if type(name) is str})
    record(load="passed")
    for index, test in enumerate(job["tests"]):
        start = time.perf_counter()
        status, error = _timed_exec(test, "test.py", namespace, timeout + 0.5)
        record(i=index, s=status, e=error[-8000:], t=round(time.perf_counter() - start, 6))


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
        role = job.get("role", "default")
        if role == "candidate":
            serve_calls(job)
        elif role == "tester":
            run_strict_tests(job, CHANNEL_FD, nonce)
        else:
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
