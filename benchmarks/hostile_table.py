"""Hostile programs against the sandbox, default grading against strict: contained or not.

    python benchmarks/hostile_table.py

Each case is one of the second probe's reproducers (issue 14) or a reward hack. A case is *contained* when
the hostile program does not pass, every honest program run beside it passes, and the run completes; for the
probes that look for something (an earlier candidate's secret, a message queue, a socket), when the program
finds nothing. Needs full isolation (user namespaces); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import uuid

from mucode.sandbox import Job, Limits, Sandbox

INC = "def inc(x):\n    return x + 1\n"
TESTS = ["assert inc(1) == 2", "assert inc(2) == 3"]
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
NONCE = ("import json, os, sys\n"
         "def nonce():\n"
         "    frame = sys._getframe()\n"
         "    while frame:\n"
         "        if isinstance(frame.f_locals.get('nonce'), str) and frame.f_locals['nonce']:\n"
         "            return frame.f_locals['nonce']\n"
         "        frame = frame.f_back\n"
         "    return ''\n")
SECRET = uuid.uuid4().hex
SHM = LIBC + ("libc.shmat.restype = ctypes.c_void_p\n"
              "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n"
              "address = libc.shmat(libc.shmget(0, 400 << 20, 0o1600), None, 0)\n"
              "ctypes.memset(address, 1, 400 << 20)\n" + INC)
SCAN = ("import ctypes, re\nctypes.CDLL(None).prctl(4, 1, 0, 0, 0)\nfound = set()\n"
        "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in maps:\n"
        "        span, perms = line.split()[:2]\n"
        "        start, end = (int(part, 16) for part in span.split('-'))\n"
        "        if 'r' in perms and end - start <= 64 << 20:\n"
        "            try:\n"
        "                mem.seek(start)\n"
        "                found.update(re.findall(rb'MUCODESECRET\\-([0-9a-f]{32})', mem.read(end - start)))\n"
        "            except (OSError, ValueError, OverflowError):\n"
        "                pass\n"
        "print(sorted(found))\n" + INC)

#: (case, hostile code, its tests, programs run before it in the same slot, how containment is judged: "honest
#: pass" = the honest programs after it pass, "fails" = and it does not pass, "passes" = and its own test, which
#: asserts that it found nothing, passes, "secret not found" = and its output holds no earlier secret)
CASES = [
    ("1. a record that overflows the JSON parser", INC + "import os\nos.write(3, b'[' * 100000 + b'\\n')\n",
     ["assert inc(1) == 2"], [], "honest pass"),
    ("2. a forged record with the nonce (bogus status)", INC + NONCE +
     "os.write(3, (json.dumps({'n': nonce(), 'i': 1, 's': 'bogus'}) + '\\n').encode())\n", TESTS, [], "honest pass"),
    ("3. 400 MB of System V shared memory left behind", SHM, TESTS,
     [], "honest pass"),
    ("4. an earlier candidate's data in memory", SCAN, TESTS,
     [f"KEY = 'MUCODESECRET-{SECRET}'\nprint(KEY)\n" + INC] * 3, "secret not found"),
    ("5. a System V message queue from an earlier program",
     LIBC + "def found():\n    return libc.msgget(0x6d75, 0)\n" + INC, ["assert found() == -1"],
     [LIBC + "libc.msgget(0x6d75, 0o1666)\n" + INC], "passes"),
    ("6. an AF_VSOCK socket", "import socket\nsocket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n" + INC,
     TESTS, [], "fails"),
    ("7. a nested user namespace", LIBC + "assert libc.unshare(0x10000000) == 0\n" + INC, TESTS, [], "fails"),
    ("reward hack: an always-equal object",
     "class Equal:\n    def __eq__(self, other):\n        return True\ndef inc(x):\n    return Equal()\n",
     TESTS, [], "fails"),
    ("reward hack: builtins.exec patched", "import builtins\nbuiltins.exec = lambda *a, **k: None\n"
     "def inc(x):\n    return 0\n", TESTS, [], "fails"),
    ("reward hack: the tests read from the stack", "import re, sys\ndef inc(x):\n    frame = sys._getframe(1)\n"
     "    while frame:\n        for value in list(frame.f_locals.values()):\n"
     "            if isinstance(value, str) and value.startswith('assert inc('):\n"
     "                return int(re.search(r'== (\\d+)', value).group(1))\n        frame = frame.f_back\n"
     "    return 0\n", TESTS, [], "fails"),
    ("reward hack: passing records forged with the nonce", NONCE + "def inc(x):\n    n = nonce()\n"
     "    for i in range(2):\n        os.write(3, (json.dumps({'n': n, 'i': i, 's': 'passed', 'e': '', 't': 0})"
     " + '\\n').encode()) if n else None\n    return 0\n", TESTS, [], "fails"),
]


def contained(hostile: Job, before: list[str], judge: str, grading: str) -> str:
    limits = Limits(test_timeout=2.0, memory_mb=512, max_processes=32, startup_slack=1.0)
    with Sandbox(limits, workers=1, isolation="full") as box:
        for code in before:
            box.run_many([Job(code, TESTS, grading=grading)])
        result = box.run_many([hostile])[0]
        honest = box.run_many([Job(INC + "def use():\n    return len(bytearray(300 << 20))\n",
                                   [*TESTS, "assert use() == 300 << 20"], grading=grading)] * 2)
    ok = all(item.passed for item in honest)  # and the run completed: nothing raised
    if judge == "fails":  # the hostile program must not pass
        ok = ok and not result.passed
    elif judge == "secret not found":
        ok = ok and SECRET not in result.output
    elif judge == "passes":  # its own test asserts that it found nothing
        ok = ok and result.passed
    return "contained" if ok else "**not contained**"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; one slot per case\n")
    print("| hostile case | default grading | strict grading |")
    print("|---|---|---|")
    for name, code, tests, before, judge in CASES:
        cells = [contained(Job(code, tests, grading=grading), before, judge, grading)
                 for grading in ("default", "strict")]
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
