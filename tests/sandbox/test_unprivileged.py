"""The sandbox as an ordinary user: the path non-root users, many CI systems and containers take.

Runs only where this test can drop to `nobody` (the host is root) and a system Python readable by that
user exists; the sandbox modules use the standard library alone, so no installation is needed there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = Path("/usr/bin/python3")
SRC = Path(__file__).resolve().parents[2] / "src"
SCRIPT = """
import json, sys
sys.path.insert(0, {src!r})
from mucode.sandbox import Limits, Sandbox
with Sandbox(Limits(test_timeout=2, memory_mb=512), workers=2, isolation="full") as box:
    result = box.run("import os\\n", [
        "assert os.getuid() == 0 and open('/proc/self/status').read().count('CapEff:\\t0000000000000000')",
        "assert 1 == 2",
        "import socket; socket.create_connection(('127.0.0.1', 22), timeout=1)",
        "open('/etc/passwd', 'a')",
        "while True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass",
    ])
    print(json.dumps({{"layers": box.isolation, "statuses": [v.status.value for v in result.verdicts]}}))
"""


@pytest.mark.hostile
def test_unprivileged_user_gets_namespaces_and_no_capabilities():
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    completed = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SYSTEM_PYTHON), "-I", "-c",
         SCRIPT.format(src=str(SRC))],
        capture_output=True, text=True, timeout=120, cwd="/")
    if "Permission denied" in completed.stderr:
        pytest.skip(f"the source tree is not readable by nobody: {completed.stderr.strip()[-200:]}")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["layers"] == "user,net,mount,pid,ipc,nocaps"
    assert report["statuses"] == ["passed", "failed", "failed", "failed", "timeout"]
