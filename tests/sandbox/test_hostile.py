"""Hostile programs: each case asserts the right verdict AND that the host was not touched.

Every test ends by checking that no process of the program survives and that the executor still works.
These run only with full isolation (the fixture skips otherwise): they must never harm the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mucode.sandbox import Job, Sandbox
from mucode.types import TestStatus

from .conftest import SMALL, assert_healthy, assert_no_leftovers

pytestmark = pytest.mark.hostile

PASSES = "assert True"


@pytest.fixture(autouse=True)
def contained(sandbox) -> Iterator[None]:
    yield
    assert_no_leftovers(sandbox)
    assert_healthy(sandbox)


@pytest.fixture
def host_canary() -> Iterator[Path]:
    """A directory the sandbox can see read-only (under /opt), holding a secret file readable only by root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to plant a canary in /opt")
    directory = Path("/opt") / f"mucode-canary-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    (directory / "public.txt").write_text("public")
    secret = directory / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY")
    secret.chmod(0o600)
    yield directory
    shutil.rmtree(directory)


def statuses(result) -> list[str]:
    return [v.status.value for v in result.verdicts]


def test_fork_bomb_is_contained(sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = sandbox.run(code, [PASSES])
    assert not result.passed
    assert statuses(result) == ["timeout"]


def test_thread_bomb_hits_the_process_limit(sandbox):
    code = (
        "import threading, time\n"
        "threads = []\n"
        "def spawn():\n"
        "    while True:\n"
        "        t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
        "        t.start()\n"
        "        threads.append(t)\n"
    )
    result = sandbox.run(code, ["spawn()"])
    assert statuses(result) == ["failed"]
    assert "can't start new thread" in result.verdicts[0].error


def test_memory_bomb_fails_with_memory_error(sandbox):
    result = sandbox.run("blocks = []\n", ["while True:\n    blocks.append(bytearray(50 * 2**20))"])
    assert statuses(result) == ["failed"]
    assert "MemoryError" in result.verdicts[0].error


def test_memory_bomb_across_processes_is_contained(sandbox):
    code = (
        "import os\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        blocks = []\n"
        "        while True:\n"
        "            try:\n"
        "                blocks.append(bytearray(50 * 2**20))\n"
        "            except MemoryError:\n"
        "                import time; time.sleep(60)\n"
    )
    result = sandbox.run(code, ["import time; time.sleep(1)", "assert False"])
    assert statuses(result)[1] in ("failed", "crashed", "timeout", "not_run")
    assert not result.passed


def test_infinite_loop_ignoring_sigterm_times_out(sandbox):
    code = ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n")
    start = time.monotonic()
    result = sandbox.run(code, ["while True:\n    pass", PASSES])
    elapsed = time.monotonic() - start
    assert statuses(result) == ["timeout", "not_run"]
    assert elapsed < SMALL.test_timeout * 3 + SMALL.startup_slack + 2


def test_swallowing_the_timeout_exception_does_not_help(sandbox):
    code = ("import time\ndef stubborn():\n    while True:\n        try:\n            time.sleep(10)\n"
            "        except BaseException:\n            pass\n")
    result = sandbox.run(code, ["stubborn()"])
    assert statuses(result) == ["timeout"]


def test_c_level_busy_loop_times_out(sandbox):
    result = sandbox.run("", ["sum(range(10**13))"])
    assert statuses(result) == ["timeout"]


def test_100mb_of_output_neither_hangs_nor_fills_memory(sandbox):
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\nsys.stdout.flush()\n"
    start = time.monotonic()
    result = sandbox.run(code, [PASSES])
    assert time.monotonic() - start < 10
    assert result.passed  # printing is not a failure
    assert len(result.output) <= SMALL.output_bytes + 200
    assert "more bytes of output dropped" in result.output


def test_network_connect_to_host_listener_fails(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(4)
    port = listener.getsockname()[1]
    accepted: list = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)))
    thread.start()
    test = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')"
    result = sandbox.run("", [test])
    thread.join()
    listener.close()
    assert statuses(result) == ["failed"]
    assert "OSError" in result.verdicts[0].error or "unreachable" in result.verdicts[0].error
    assert accepted == [None]


def _accept(listener: socket.socket):
    try:
        connection, _ = listener.accept()
        connection.close()
        return "connected"
    except OSError:
        return None


def test_no_network_interfaces_but_loopback(sandbox):
    result = sandbox.run("import socket\n", ["print(sorted(n for _, n in socket.if_nameindex()))"])
    assert result.passed
    assert result.output.strip() == "['lo']"


def test_writing_and_deleting_host_files_fails(sandbox, host_canary):
    public = host_canary / "public.txt"
    tests = [
        f"open({str(public)!r}, 'w').write('pwned')",
        f"import os; os.remove({str(public)!r})",
        f"import shutil; shutil.rmtree({str(host_canary)!r})",
        f"open({str(host_canary / 'new.txt')!r}, 'w').write('pwned')",
        "import sys, os; open(os.path.join(sys.prefix, 'mucode-pwned'), 'w')",
    ]
    result = sandbox.run("", tests)
    assert statuses(result) == ["failed"] * 5
    assert all("Read-only file system" in v.error or "Permission" in v.error for v in result.verdicts)
    assert public.read_text() == "public"
    assert sorted(p.name for p in host_canary.iterdir()) == ["public.txt", "secret.txt"]


def test_repository_and_home_directories_are_invisible(sandbox, tmp_path):
    marker = tmp_path / "host-file.txt"
    marker.write_text("host")
    tests = [
        f"open({str(marker)!r}).read()",
        f"open({str(Path(__file__).resolve())!r}).read()",
        "import os; assert os.listdir('/home') == []",
        "import os; assert os.listdir('/root') in ([], ['.pyenv'])",
    ]
    result = sandbox.run("", tests)
    assert statuses(result) == ["failed", "failed", "passed", "passed"]
    assert "FileNotFoundError" in result.verdicts[0].error


def test_another_users_file_is_unreadable(sandbox, host_canary):
    tests = [f"print(open({str(host_canary / 'secret.txt')!r}).read())", "print(open('/etc/shadow').read())"]
    result = sandbox.run("", tests)
    assert statuses(result) == ["failed", "failed"]
    assert all("PermissionError" in v.error for v in result.verdicts)
    assert "TOP-SECRET-CANARY" not in result.output


def test_environment_is_scrubbed(monkeypatch):
    from mucode.sandbox import Sandbox

    monkeypatch.setenv("MUCODE_TEST_SECRET", "hunter2")
    with Sandbox(SMALL, workers=1, isolation="full") as box:
        result = box.run("import os\n", ["print(dict(os.environ))"])
    assert result.passed
    assert "hunter2" not in result.output
    assert "MUCODE_TEST_SECRET" not in result.output


def test_killing_the_parent_and_everything_visible_is_harmless(sandbox):
    code = "import os, signal\n"
    tests = ["os.kill(os.getppid(), signal.SIGKILL)", "os.kill(1, signal.SIGKILL)", "os.kill(-1, signal.SIGKILL)",
             PASSES]
    pid_before = sandbox._process.pid
    result = sandbox.run(code, tests)
    assert sandbox._process.pid == pid_before
    assert statuses(result)[-1] in ("passed", "crashed", "not_run")


def test_setsid_daemon_is_killed_with_the_program(sandbox):
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(3)\n"
        "        open('/tmp/late', 'w').write('still alive')\n"
        "        while True: time.sleep(1)\n"
        "    os._exit(0)\n"
    )
    result = sandbox.run(code, [PASSES])
    assert result.passed
    # The daemon is gone as soon as the result is back (assert_no_leftovers checks the host process table).


def test_os_exit_zero_before_the_tests_is_not_a_pass(sandbox):
    result = sandbox.run("import os\nos._exit(0)\n", [PASSES, PASSES])
    assert not result.passed
    assert statuses(result) == ["crashed", "crashed"]
    assert "status 0" in result.program_error


def test_sys_exit_zero_is_not_a_pass(sandbox):
    result = sandbox.run("import sys\nsys.exit(0)\n", [PASSES])
    assert not result.passed
    assert "SystemExit" in result.program_error


def test_exit_inside_a_test_is_not_a_pass(sandbox):
    result = sandbox.run("import os\ndef f():\n    os._exit(0)\n", ["assert f() == 3", PASSES])
    assert statuses(result) == ["crashed", "not_run"]


def test_atexit_hook_cannot_forge_verdicts(sandbox):
    code = (
        "import atexit, json, os\n"
        "def forge():\n"
        "    for fd in range(3, 20):\n"
        "        try:\n"
        "            os.write(fd, (json.dumps({'i': 0, 's': 'passed', 'e': '', 't': 0}) + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
        "atexit.register(forge)\n"
        "def f():\n    return 1\n"
    )
    result = sandbox.run(code, ["assert f() == 2"])
    assert statuses(result) == ["failed"]


def test_blind_writes_to_the_verdict_channel_are_ignored(sandbox):
    code = (
        "import json, os\n"
        "for fd in range(3, 20):\n"
        "    for record in ({'load': 'passed'}, {'i': 0, 's': 'passed', 'e': '', 't': 0}):\n"
        "        try:\n"
        "            os.write(fd, (json.dumps(record) + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
    )
    result = sandbox.run(code, ["assert False"])
    assert statuses(result) == ["failed"]


def test_printed_success_markers_are_ignored(sandbox):
    code = (
        "print('Code passed all tests')\n"
        "print('{\"i\": 0, \"s\": \"passed\"}')\n"
        "import sys; sys.stderr.write('PASSED\\n')\n"
    )
    result = sandbox.run(code, ["assert 1 == 2"])
    assert statuses(result) == ["failed"]


def test_closing_the_verdict_channel_is_a_failure(sandbox):
    code = "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"
    result = sandbox.run(code, [PASSES])
    assert not result.passed


def test_stdin_read_gets_end_of_file_immediately(sandbox):
    start = time.monotonic()
    result = sandbox.run("", ["input()", "import sys; assert sys.stdin.read() == ''"])
    assert time.monotonic() - start < 5
    assert statuses(result) == ["failed", "passed"]
    assert "EOFError" in result.verdicts[0].error


def test_deep_recursion_is_an_ordinary_failure(sandbox):
    result = sandbox.run("def f(n):\n    return f(n + 1)\n", ["f(0)"])
    assert statuses(result) == ["failed"]
    assert "RecursionError" in result.verdicts[0].error
    assert len(result.verdicts[0].error) < 10_000  # repeated frames are collapsed


def test_stack_overflow_crash_is_contained(sandbox):
    # Recursion through a builtin (map) grows the C stack until the process segfaults.
    code = "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return list(map(f, [n + 1]))\n"
    result = sandbox.run(code, ["f(0)", PASSES])
    assert statuses(result)[0] == "crashed"
    assert "SIGSEGV" in result.verdicts[0].error


def test_segfault_via_ctypes_is_a_crash(sandbox):
    result = sandbox.run("import ctypes\n", [PASSES, "ctypes.string_at(0)", PASSES])
    assert statuses(result) == ["passed", "crashed", "not_run"]
    assert "SIGSEGV" in result.verdicts[1].error


def test_disk_fill_is_bounded(sandbox):
    code = (
        "import os\n"
        "def fill():\n"
        "    for i in range(10**6):\n"
        "        with open(f'f{i}', 'wb') as handle:\n"
        "            handle.write(b'x' * 2**20)\n"
    )
    before = shutil.disk_usage("/").free
    result = sandbox.run(code, ["fill()"])
    assert statuses(result) == ["failed"]
    assert "No space left" in result.verdicts[0].error
    assert abs(shutil.disk_usage("/").free - before) < 512 * 2**20


def test_single_huge_file_hits_the_file_size_limit(sandbox):
    result = sandbox.run("", ["open('big', 'wb').write(b'x' * (64 * 2**20))"])
    assert statuses(result) == ["failed"]
    assert "File too large" in result.verdicts[0].error or "No space" in result.verdicts[0].error


def test_privilege_escalation_attempts_fail(sandbox):
    tests = ["import os; os.setuid(0)", "import os; os.chroot('/')",
             "import ctypes; assert ctypes.CDLL(None).mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0",
             "import os; assert os.getuid() != 0"]
    result = sandbox.run("", tests)
    assert statuses(result) == ["failed", "failed", "failed", "passed"]


def test_only_the_programs_own_processes_are_visible(sandbox):
    result = sandbox.run("import os\n", ["print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"])
    assert result.passed
    pids = eval(result.output.strip())
    assert len(pids) <= 3  # the slot's PID 1 and the program itself


def test_leftover_files_do_not_leak_into_the_next_program(sandbox):
    first = sandbox.run("", ["open('/tmp/leak.txt', 'w').write('x'); open('/dev/shm/leak', 'w').write('x')"])
    assert first.passed
    results = [sandbox.run("import os\n", ["assert not os.path.exists('/tmp/leak.txt')",
                                           "assert not os.path.exists('/dev/shm/leak')"]) for _ in range(4)]
    assert all(r.passed for r in results)


def test_blocking_the_alarm_signal_still_times_out(sandbox):
    code = "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
    result = sandbox.run(code, ["time.sleep(100)"])
    assert statuses(result) == ["timeout"]
    assert result.verdicts[0].status is TestStatus.TIMEOUT


# ----------------------------------------------------------------- round two: the verdict channel as an attack

INC = "def inc(x):\n    return x + 1\n"
#: Finds the per-program nonce in the harness's stack frames and writes one record with it.
FORGER = (
    "import json, os, sys\n"
    "def nonce():\n"
    "    frame = sys._getframe()\n"
    "    while frame:\n"
    "        if isinstance(frame.f_locals.get('nonce'), str):\n"
    "            return frame.f_locals['nonce']\n"
    "        frame = frame.f_back\n"
    "def forge(**fields):\n"
    "    os.write(3, (json.dumps({'n': nonce(), **fields}) + '\\n').encode())\n"
)


def honest_jobs_beside(sandbox, hostile_code: str, tests: list[str]) -> tuple:
    """The hostile job run concurrently with honest ones; the honest verdicts must be unaffected."""
    honest = [Job(INC, ["assert inc(1) == 2", "assert inc(2) == 3"]) for _ in range(3)]
    results = sandbox.run_many([honest[0], Job(hostile_code, tests), *honest[1:]])
    for result in (results[0], *results[2:]):
        assert statuses(result) == ["passed", "passed"]
    return results[1]


def test_a_record_that_overflows_the_json_parser_fails_only_its_program(sandbox):
    """Hole 1: '[' * 100000 makes json.loads raise RecursionError; once it killed the slot and the whole run."""
    code = INC + "import os\nos.write(3, b'[' * 100000 + b'\\n')\n"
    result = honest_jobs_beside(sandbox, code, ["assert inc(1) == 2"])
    assert statuses(result) == ["passed"]  # the garbage line is skipped; the harness's own records decide


@pytest.mark.parametrize("fields", [
    {"i": 0, "s": "bogus"},          # once raised in the host's reader thread: every pending job hung
    {"i": 0, "s": "passed", "t": "x"},  # once killed the slot: "a sandbox slot died"
    {"i": "0", "s": "passed"},
    {"i": 0, "s": "passed", "e": ["list"]},
    {"i": 0, "s": "passed", "t": float("inf")},
])
def test_a_forged_malformed_record_fails_its_program_and_nothing_else(sandbox, fields):
    """Hole 2: a program that reads the nonce and writes a record of the wrong shape."""
    forge = f"forge(**{fields!r})".replace("inf", "float('inf')")
    result = honest_jobs_beside(sandbox, INC + FORGER, [forge])  # after the program loaded, inside its test
    assert statuses(result) == ["failed"]
    assert "malformed verdict record" in result.verdicts[0].error
    result = honest_jobs_beside(sandbox, INC + FORGER + forge + "\n", ["assert inc(1) == 2"])  # while loading
    assert statuses(result) == ["failed"]
    assert "malformed verdict record" in result.verdicts[0].error


# ------------------------------------------------------------ round two: nothing outlives a program

SYSV = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.shmat.restype = ctypes.c_void_p\n"
    "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n"
    "libc.shmdt.argtypes = [ctypes.c_void_p]\n"
)


def test_sysv_shared_memory_dies_with_its_program(sandbox):
    """Hole 3: a 400 MB segment left behind once pinned the slot's memory and got later programs killed."""
    hog = SYSV + (
        "def hog():\n"
        "    ident = libc.shmget(0, 400 << 20, 0o1600)\n"
        "    assert ident >= 0, ctypes.get_errno()\n"
        "    address = libc.shmat(ident, None, 0)\n"
        "    ctypes.memset(address, 1, 400 << 20)\n"
        "    libc.shmdt(address)\n"
    )
    assert statuses(sandbox.run(hog, ["hog()"])) == ["passed"]
    honest = "def use():\n    block = bytearray(300 << 20)\n    return len(block)\n"
    for result in sandbox.run_many([Job(honest, ["assert use() == 300 << 20"]) for _ in range(4)]):
        assert statuses(result) == ["passed"], result
    listing = sandbox.run("import pathlib\nrows = pathlib.Path('/proc/sysvipc/shm').read_text().splitlines()\n",
                          ["assert len(rows) == 1, rows"])  # the header line only
    assert statuses(listing) == ["passed"], listing


def test_a_message_queue_does_not_reach_the_next_program(sandbox):
    """Hole 5: a System V message queue written by one program was read by a later one."""
    writer = SYSV + "assert libc.msgget(0x6d75, 0o1666) >= 0\n"
    assert sandbox.run(writer, [PASSES]).passed
    reader = SYSV + "found = libc.msgget(0x6d75, 0)\n"
    results = sandbox.run_many([Job(reader, ["assert found == -1, found"]) for _ in range(4)])
    assert all(result.passed for result in results), results


def test_an_abstract_socket_does_not_reach_a_program_in_another_slot(sandbox):
    """Hole 5: an abstract unix socket carried a message from the slot-0 program to the slot-1 program."""
    listener = (
        "import socket, time\n"
        "server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "server.bind('\\0mucode-probe')\n"
        "server.listen(1)\n"
        "server.settimeout(1.5)\n"
        "try:\n"
        "    server.accept()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
    )
    connector = (
        "import socket, time\n"
        "def reach():\n"
        "    end = time.monotonic() + 1.2\n"
        "    while time.monotonic() < end:\n"
        "        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "        try:\n"
        "            client.connect('\\0mucode-probe')\n"
        "            return True\n"
        "        except OSError:\n"
        "            time.sleep(0.05)\n"
        "    return False\n"
    )
    results = sandbox.run_many([Job(listener, ["assert not reached"]), Job(connector, ["assert not reach()"])])
    assert [statuses(result) for result in results] == [["passed"], ["passed"]], results


def test_a_program_cannot_create_a_user_namespace(sandbox):
    """Hole 7: unshare(CLONE_NEWUSER) gave a program every capability in a namespace of its own (it mounted a
    2 GB tmpfs past its disk quota)."""
    code = SYSV + "def unshare(flags):\n    return libc.unshare(flags), ctypes.get_errno()\n"
    result = sandbox.run(code, ["assert unshare(0x10000000 | 0x00020000 | 0x40000000)[0] == -1",
                                "assert unshare(0x10000000)[1] == 28  # ENOSPC: max_user_namespaces is 0"])
    assert statuses(result) == ["passed", "passed"], result


def test_vsock_and_other_unnamespaced_socket_families_cannot_be_created(sandbox):
    """Hole 6: AF_VSOCK is outside the network namespace (it shares the host's vsock ports and reaches the
    hypervisor); socket() and socketpair() now refuse every family but AF_UNIX, AF_INET(6) and AF_NETLINK, so no
    vsock address can ever be connected to."""
    code = (
        "import ctypes, errno, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def refused(family, kind=socket.SOCK_STREAM):\n"
        "    try:\n"
        "        socket.socket(family, kind).close()\n"
        "    except OSError as error:\n"
        "        return error.errno == errno.EAFNOSUPPORT\n"
        "    return False\n"
        "import platform\n"
        "def raw_socket(family):  # the syscall itself, past any library wrapper\n"
        "    number = {'x86_64': 41, 'aarch64': 198}[platform.machine()]\n"
        "    return libc.syscall(number, family, 1, 0), ctypes.get_errno()\n"
    )
    result = sandbox.run(code, [
        "assert refused(socket.AF_VSOCK)",
        "assert refused(socket.AF_VSOCK, socket.SOCK_DGRAM)",
        "assert refused(socket.AF_ALG, socket.SOCK_SEQPACKET)",
        "assert raw_socket(40) == (-1, errno.EAFNOSUPPORT)",
        "socket.socket(socket.AF_INET).close(); socket.socket(socket.AF_UNIX).close()",
        "a, b = socket.socketpair(); a.close(); b.close()",
    ])
    assert statuses(result) == ["passed"] * 6, result


def test_a_program_finds_no_earlier_candidate_in_its_memory():
    """Hole 4: programs forked from the long-lived slot server inherited its freed memory, and one read an
    earlier sample's source, output and private test from /proc/self/mem (one slot, three programs later).
    Programs now start from a fresh interpreter image."""
    secret = uuid.uuid4().hex
    honest = Job(f"KEY = 'MUCODESECRET-{secret}'\nprint(KEY)\n", [f"assert KEY.endswith('{secret}')"])
    scanner = (
        "import ctypes, re\n"
        "ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, so /proc/self/mem is readable\n"
        "PATTERN = re.compile(rb'MUCODESECRET\\-([0-9a-f]{32})')\n"
        "def scan():\n"
        "    found = set()\n"
        "    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "        for line in maps:\n"
        "            span, perms = line.split()[:2]\n"
        "            start, end = (int(part, 16) for part in span.split('-'))\n"
        "            if 'r' not in perms or end - start > 64 << 20:\n"
        "                continue\n"
        "            try:\n"
        "                mem.seek(start)\n"
        "                found.update(PATTERN.findall(mem.read(end - start)))\n"
        "            except (OSError, ValueError, OverflowError):\n"
        "                continue\n"
        "    return found\n"
        "FOUND = scan()\n"
        "print(sorted(FOUND))\n"
    )
    with Sandbox(SMALL, workers=1, isolation="full") as one_slot:
        assert all(one_slot.run(honest.code, honest.tests).passed for _ in range(3))
        result = one_slot.run(scanner, [PASSES])
    assert result.passed, result
    assert "[" in result.output and secret not in result.output, result.output
