"""The sandbox executor: a lean, stdlib-only process that runs untrusted programs.

It is started by `mucode.sandbox.core.Sandbox` as ``python -I executor.py`` (a fresh interpreter, never a
fork of a process holding a model) and talks to it over stdin/stdout with length-prefixed JSON messages.

Process tree (full isolation; see docs/sandbox.md for the threat model)::

    outer   host namespaces: creates per-slot cgroups, writes the uid/gid maps, waits
    └ middle   new user, mount, network, IPC, UTS and PID namespaces
      └ inner   PID 1 of the sandbox: builds a read-only root with pivot_root, serves jobs
        └ intermediate   one per program: new PID + mount namespace for it, waits for it
          └ program   PID 1 of its own namespace, fresh /tmp, /dev/shm and /proc, rlimits,
                      cgroup, unprivileged uid, no capabilities; runs the code and the tests

Killing the program's PID 1 kills every process it created, including ones that called setsid or
daemonized. The verdict of each test travels on a dedicated pipe; exit codes and printed text are never
read as verdicts.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import marshal
import os
import resource
import selectors
import signal
import struct
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MS_PRIVATE = 1 << 18
F_SETPIPE_SZ = 1031
MNT_DETACH = 2
ST_TO_MS = {1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME,
            4096: MS_RELATIME}

PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 24, 36, 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine)

UID_BASE = 1_500_000_000  # host root: sandbox uid u > 0 is host uid UID_BASE + u; slot k runs as 1000 + k
UID_COUNT = 65536
SLOT_UID = 1000
# program.py's source, read now: after pivot_root the package's folder may not be visible (an editable install),
# so each program runs it as ``python -c``.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "program.py"), encoding="utf-8") as _file:
    PROGRAM_SOURCE = _file.read()
JOB_FD = 4  # where program.py reads its job (program.JOB_FD; the executor imports nothing of mucode)
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_RECORDS_BYTES = 4 << 20  # the result channel of one program; more than this is not read
#: The statuses a test record may carry (mucode.types.TestStatus, written out: the executor imports no mucode).
TEST_STATUSES = frozenset({"passed", "failed", "timeout", "crashed"})
EXIT_GRACE = 0.5  # seconds to wait for pipes to close after the program exited
KILL_GRACE = 5.0  # seconds to wait for a killed program to be reaped before looking again

libc = ctypes.CDLL(None, use_errno=True)
SECCOMP_SUPPORTED = os.uname().machine in ("x86_64", "aarch64")


# --------------------------------------------------------------------------------------------------
# Thin syscall wrappers


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def unshare(flags: int) -> None:
    _check(libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def prctl(option: int, arg: int) -> None:
    _check(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)), f"prctl {option}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), _b(new_root), _b(put_old)), "pivot_root")


# seccomp: which socket families a program may create. The network namespace contains AF_INET/AF_INET6 (only a
# loopback that is down), AF_UNIX (abstract names are per namespace) and AF_NETLINK; other families are not all
# namespaced (AF_VSOCK shares the host's port space and reaches the hypervisor) or are kernel attack surface
# (AF_ALG, AF_KCM, ...), so socket() and socketpair() refuse them with EAFNOSUPPORT.
ALLOWED_SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 53), "aarch64": (0xC00000B7, 198, 199)}  # audit arch, socket, socketpair
_BPF_LD_ABS, _BPF_JEQ, _BPF_JGE, _BPF_RET = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EAFNOSUPPORT, _ENOSYS = 97, 38


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def socket_filter() -> list[tuple[int, int, int, int]]:
    """The BPF program: other architectures' syscalls (x86's int 0x80 socketcall) and x32 numbers are refused;
    socket/socketpair pass only for `ALLOWED_SOCKET_FAMILIES`; every other syscall is allowed."""
    arch, socket_nr, socketpair_nr = _SECCOMP_ARCH[os.uname().machine]
    families = len(ALLOWED_SOCKET_FAMILIES)
    program = [(_BPF_LD_ABS, 0, 0, 4),  # seccomp_data.arch
               (_BPF_JEQ, 1, 0, arch),
               (_BPF_RET, 0, 0, _RET_ERRNO | _ENOSYS),
               (_BPF_LD_ABS, 0, 0, 0),  # seccomp_data.nr
               (_BPF_JGE, 0, 1, 0x40000000),
               (_BPF_RET, 0, 0, _RET_ERRNO | _ENOSYS),
               (_BPF_JEQ, 2, 0, socket_nr),
               (_BPF_JEQ, 1, 0, socketpair_nr),
               (_BPF_RET, 0, 0, _RET_ALLOW),
               (_BPF_LD_ABS, 0, 0, 16)]  # the low 32 bits of args[0]: the family
    program += [(_BPF_JEQ, families - index, 0, family) for index, family in enumerate(ALLOWED_SOCKET_FAMILIES)]
    return [*program, (_BPF_RET, 0, 0, _RET_ERRNO | _EAFNOSUPPORT), (_BPF_RET, 0, 0, _RET_ALLOW)]


def install_socket_filter() -> None:
    """Install `socket_filter` for this process and its children (after PR_SET_NO_NEW_PRIVS)."""
    instructions = socket_filter()
    array = (_SockFilter * len(instructions))(*(_SockFilter(*item) for item in instructions))
    program = _SockFprog(len(instructions), array)
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0), "seccomp")


def drop_all_capabilities() -> None:
    """Empty the bounding set and the effective/permitted/inheritable sets of this process."""
    for cap in range(64):
        if libc.prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break  # EINVAL past the last capability the kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.syscall(ctypes.c_long(SYS_CAPSET), header, data), "capset")


# --------------------------------------------------------------------------------------------------
# Framing: 4-byte big-endian length + UTF-8 JSON


def read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict:
    (size,) = struct.unpack(">I", read_exact(fd, 4))
    return json.loads(read_exact(fd, size))


def write_message(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


# --------------------------------------------------------------------------------------------------
# Isolation setup (runs once per executor)


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


class Cgroups:
    """Per-slot pids+memory cgroups, joined by each program; available when the host lets us create them."""

    def __init__(self, slots: int, memory_bytes: int, max_pids: int) -> None:
        self.dirs: list[str] = []
        self.fds: list[list[int]] = [[] for _ in range(slots)]
        base = "/sys/fs/cgroup"
        if os.path.exists(f"{base}/cgroup.controllers"):
            self._setup_v2(base, slots, memory_bytes, max_pids)
        else:
            self._setup_v1(base, slots, memory_bytes, max_pids)

    def _make(self, path: str, settings: dict[str, str]) -> int:
        os.makedirs(path, exist_ok=True)
        self.dirs.append(path)
        for name, value in settings.items():
            if os.path.exists(f"{path}/{name}"):
                _write_file(f"{path}/{name}", value)
        return os.open(f"{path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def _setup_v1(self, base: str, slots: int, memory_bytes: int, max_pids: int) -> None:
        for controller, settings in (("pids", {"pids.max": str(max_pids)}),
                                     ("memory", {"memory.limit_in_bytes": str(memory_bytes),
                                                 "memory.memsw.limit_in_bytes": str(memory_bytes)})):
            root = f"{base}/{controller}/mucode"
            _remove_stale(root)
            for slot in range(slots):
                self.fds[slot].append(self._make(f"{root}/{os.getpid()}-{slot}", settings))

    def _setup_v2(self, base: str, slots: int, memory_bytes: int, max_pids: int) -> None:
        with open("/proc/self/cgroup") as handle:
            own = next(line.split("::", 1)[1].strip() for line in handle if line.startswith("0::"))
        root = f"{base}{own.rstrip('/')}/mucode"
        _remove_stale(root)
        os.makedirs(root, exist_ok=True)
        self.dirs.append(root)
        _write_file(f"{root}/cgroup.subtree_control", "+pids +memory")
        for slot in range(slots):
            settings = {"pids.max": str(max_pids), "memory.max": str(memory_bytes), "memory.swap.max": "0"}
            self.fds[slot].append(self._make(f"{root}/{os.getpid()}-{slot}", settings))

    def remove(self) -> None:
        for path in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def _remove_stale(root: str) -> None:
    """Remove the cgroups of executors that died without cleaning up (named ``<pid>-<slot>``).

    Idle cgroups of live executors are empty too, so the owner's liveness decides, not emptiness.
    """
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        owner = name.split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(f"{root}/{name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def enter_namespaces(privileged: bool) -> int:
    """Fork a child into new namespaces; return the child's pid in the parent and 0 in the child.

    The parent writes the child's uid/gid maps, which needs privileges in the parent namespace when more than
    the caller's own uid is mapped (the host is root). Errors in the child are sent back on a pipe.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID)
            os.write(ready_w, b"ok")
        except OSError as error:
            os.write(ready_w, f"error: {error}".encode())
            os._exit(3)
        if os.read(go_r, 64) != b"go":
            os._exit(3)
        os.close(ready_w)
        os.close(go_r)
        return 0
    os.close(ready_w)
    os.close(go_r)
    status = os.read(ready_r, 256).decode()
    if status != "ok":
        os.waitpid(pid, 0)
        raise OSError(status or "namespace child died")
    if privileged:  # the trusted executor keeps root; programs get uids that own nothing on the host
        mapping_uid = f"0 0 1\n1 {UID_BASE + 1} {UID_COUNT - 1}\n"
        mapping_gid = mapping_uid
    else:
        _write_file(f"/proc/{pid}/setgroups", "deny")
        mapping_uid = f"0 {os.geteuid()} 1\n"
        mapping_gid = f"0 {os.getegid()} 1\n"
    _write_file(f"/proc/{pid}/uid_map", mapping_uid)
    _write_file(f"/proc/{pid}/gid_map", mapping_gid)
    os.write(go_w, b"go")
    os.close(go_w)
    os.close(ready_r)
    return pid


def _mount_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in ST_TO_MS.items() if flags & st)


def bind_readonly(source: str, target: str, device_ok: bool = False) -> None:
    """Bind ``source`` at ``target`` read-only, nosuid (and nodev unless it is a device node)."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    try:
        mount(source, target, None, MS_BIND)
    except OSError:  # a source with locked submounts only binds recursively
        mount(source, target, None, MS_BIND | MS_REC)
    flags = _mount_flags(target) | MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
    if not device_ok:
        flags |= MS_NODEV
    mount(None, target, None, flags)


def visible_paths() -> list[str]:
    """What the sandboxed program sees of the host, read-only: system dirs and this Python's installation.

    Computed before /tmp is covered, so an interpreter that lives under /tmp is still found.
    """
    candidates = ["/usr", "/etc", "/opt", sys.base_prefix, sys.prefix]
    unique: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)}, key=len):
        if not any(path == p or path.startswith(p + "/") for p in unique):
            unique.append(path)
    return unique


def build_root(new_root: str, paths: list[str]) -> None:
    """Populate ``new_root`` (a fresh tmpfs) with read-only binds, devices and /proc, then pivot into it."""
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{new_root}/{name}")
        elif os.path.isdir(host):
            bind_readonly(host, f"{new_root}/{name}")
    for path in paths:
        bind_readonly(path, new_root + path)
    os.makedirs(f"{new_root}/dev", exist_ok=True)
    mount("tmpfs", f"{new_root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for device in ("null", "zero", "full", "random", "urandom"):
        bind_readonly(f"/dev/{device}", f"{new_root}/dev/{device}", device_ok=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new_root}/dev/{name}")
    os.makedirs(f"{new_root}/dev/shm")
    for name in ("proc", "tmp", "home", "root", "run", "var/tmp"):
        os.makedirs(f"{new_root}/{name}", exist_ok=True)
    mount("proc", f"{new_root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(f"{new_root}/.old_root")
    pivot_root(new_root, f"{new_root}/.old_root")
    os.chdir("/")
    umount("/.old_root", MNT_DETACH)
    os.rmdir("/.old_root")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def become_sandbox_root(privileged: bool, cgroups: Cgroups | None) -> None:
    """In the middle process: take root of the new user namespace, then fork the inner executor (PID 1)."""
    if privileged:
        os.setresgid(0, 0, 0)
        os.setgroups([])
        os.setresuid(0, 0, 0)
    pid = os.fork()
    if pid:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    paths = visible_paths()
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    build_root("/tmp", paths)
    libc.sethostname(b"sandbox", 7)
    # No program may create a user namespace of its own (with every capability inside it, it could mount
    # filesystems past its disk quota and reach kernel code that needs CAP_SYS_ADMIN). The limit belongs to
    # this user namespace, so it binds every process in the sandbox and nothing on the host.
    _write_file("/proc/sys/user/max_user_namespaces", "0")


# --------------------------------------------------------------------------------------------------
# The program side: runs in the forked child, after isolation and privilege drop


def _set_limits(limits: dict, n_tests: int) -> None:
    mb = 1 << 20
    cpu = int(limits["cpu_seconds"] or program_wall_limit(limits, n_tests)) + 1
    for name, value in (("RLIMIT_AS", limits["memory_mb"] * mb), ("RLIMIT_CPU", cpu),
                        ("RLIMIT_FSIZE", limits["file_size_mb"] * mb), ("RLIMIT_NOFILE", limits["open_files"]),
                        ("RLIMIT_NPROC", limits["max_processes"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value if name != "RLIMIT_CPU" else value + 1))


def program_wall_limit(limits: dict, n_tests: int) -> float:
    """Wall-clock budget of one program: every test (and loading) at its full timeout, plus slack."""
    return limits["test_timeout"] * (n_tests + 1) + limits["startup_slack"]


def _reset_stdio(output_fd: int) -> None:
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)


def program_main(job_r: int, nonce: str, slot: int, channel: int, output_fd: int, isolated: bool,
                 privileged: bool, cgroup_fds: list[int], limits: dict, n_tests: int, workdir: str,
                 calls: tuple[int, int] | None = None) -> None:
    """Everything between fork and the candidate's first line: isolate this child, then execute program.py
    in it, which reads the job from ``job_r`` (as fd 4). ``calls``: strict grading's (reply, request) pipe ends,
    as fds 5 and 6. Never returns."""
    try:
        for fd in cgroup_fds:  # before any fd is renumbered: these numbers may be taken below
            os.write(fd, b"0")  # "0" moves the writer; the fd was opened by the host's root
        # Each pipe to its fixed number (3: verdicts, first, so that a failure below is reported; 4: the job;
        # 5, 6: strict grading's calls), through copies above them, so no pipe is overwritten by another.
        output, *sources = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (output_fd, channel, job_r, *(calls or ()))]
        for target, fd in enumerate(sources, start=3):
            os.dup2(fd, target)
        os.setsid()
        if isolated:  # its own System V IPC: shared memory and queues die with the program
            unshare(CLONE_NEWIPC)
        _reset_stdio(output)
        os.closerange(JOB_FD + (3 if calls else 1), 65536)
        _set_limits(limits, n_tests)
        if isolated and privileged:
            uid = SLOT_UID + slot
            os.chown(workdir, uid, uid)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        elif isolated:
            drop_all_capabilities()
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if isolated and SECCOMP_SUPPORTED:
            install_socket_filter()
        os.chdir(workdir)
        environment = {"PATH": SAFE_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
                       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # A fresh image: the slot server's memory (earlier candidates' code, tests and output) is gone.
        os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", PROGRAM_SOURCE], environment)
    except BaseException:  # a harness failure must still end this process
        with contextlib.suppress(OSError):
            os.write(3, (json.dumps({"n": nonce, "harness": traceback.format_exc()}) + "\n").encode())
    os._exit(0)


# --------------------------------------------------------------------------------------------------
# A slot: a persistent server that runs one program at a time. With isolation it is PID 1 of its own PID
# namespace, so kill(-1, SIGKILL) removes everything a program left behind (setsid, daemons, threads).


class Running:
    """Book-keeping of one program in flight."""

    def __init__(self, job: dict, nonce: str, pid: int, deadline: float) -> None:
        self.job, self.nonce, self.pid, self.deadline = job, nonce, pid, deadline
        self.start = time.perf_counter()
        self.records = bytearray()
        self.output = bytearray()
        self.output_dropped = 0
        self.exited = False
        self.timed_out = False
        self.exit_status = 0

    def take_records(self, data: bytes) -> None:
        if len(self.records) < MAX_RECORDS_BYTES:
            self.records += data

    def take_output(self, data: bytes) -> None:
        room = max(self.job["limits"]["output_bytes"] - len(self.output), 0)
        self.output += data[:room]
        self.output_dropped += max(len(data) - room, 0)


class Slot:
    """Runs the programs of one slot: fresh /tmp and /dev/shm, fork, watch, kill everything, report."""

    def __init__(self, slot: int, isolated: bool, privileged: bool, cgroup_fds: list[int],
                 site_paths: list[str]) -> None:
        self.slot, self.isolated, self.privileged, self.cgroup_fds = slot, isolated, privileged, cgroup_fds
        self.site_paths = site_paths
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        if isolated:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        else:
            prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a program come back to us to be reaped

    def serve(self, job_fd: int, result_fd: int) -> None:
        while True:
            try:
                job = read_message(job_fd)
            except EOFError:
                os._exit(0)
            write_message(result_fd, self.run(job))

    def run(self, job: dict) -> dict:
        workdir = self._fresh_workdir(job["limits"])
        nonce = os.urandom(16).hex()
        channel_r, channel_w = os.pipe2(os.O_CLOEXEC)
        output_r, output_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(channel_r, False)  # the program's ends stay blocking
        os.set_blocking(output_r, False)
        helpers: list[int] = []
        if job.get("grading") == "strict":
            pid, helpers = self._start_strict(job, nonce, channel_w, output_w, workdir)
        else:
            pid = self._start(job, nonce, channel_w, output_w, workdir)
        os.close(channel_w)
        os.close(output_w)
        state = Running(job, nonce, pid, time.monotonic() + program_wall_limit(job["limits"], len(job["tests"])))
        self._watch(state, {channel_r: state.take_records, output_r: state.take_output})
        for helper in helpers:  # strict grading's candidate process (killed with the rest when isolated)
            _kill_group(helper)
            _kill(helper)
        self._kill_all(pid)
        if not self.isolated:
            _remove_tree(workdir)
        return _report(state)

    def _start(self, job: dict, nonce: str, channel_w: int, output_w: int, workdir: str,
               calls: tuple[int, int] | None = None, role: str = "default", n_tests: int | None = None) -> int:
        """Fork one program process and hand it its job; its pid. ``n_tests`` sizes its limits (the candidate
        of strict grading gets no tests but answers calls for all of them)."""
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            program_main(job_r, nonce, self.slot, channel_w, output_w, self.isolated, self.privileged,
                         self.cgroup_fds, job["limits"], len(job["tests"]) if n_tests is None else n_tests, workdir,
                         calls)
        os.close(job_r)
        with contextlib.suppress(OSError):  # room for the whole job, so the write never waits for the program
            fcntl.fcntl(job_w, F_SETPIPE_SZ, 1 << 20)
        self._send_job(job_w, {**job, "nonce": nonce, "site_paths": self.site_paths, "role": role})
        return pid

    def _start_strict(self, job: dict, nonce: str, channel_w: int, output_w: int,
                      workdir: str) -> tuple[int, list[int]]:
        """Strict grading: the candidate (no tests, no nonce, no verdict channel) and the tester, joined by a
        pipe each way; (the tester's pid, [the candidate's pid])."""
        request_r, request_w = os.pipe2(os.O_CLOEXEC)
        reply_r, reply_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        candidate_job = {**job, "tests": [], "nonce": ""}
        candidate = self._start(candidate_job, "", null, output_w, workdir, (request_r, reply_w), "candidate",
                                len(job["tests"]))
        tester = self._start(job, nonce, channel_w, output_w, workdir, (reply_r, request_w), "tester")
        for fd in (request_r, request_w, reply_r, reply_w, null):
            os.close(fd)
        return tester, [candidate]

    @staticmethod
    def _send_job(fd: int, job: dict) -> None:
        """The job, to the program's fd 4, as program.py reads it (length, then marshal data: it loads faster
        than JSON there). A program that died before reading it is reported as such."""
        data = marshal.dumps(job)
        view = memoryview(len(data).to_bytes(4, "big") + data)
        with contextlib.suppress(BrokenPipeError):
            while view:
                view = view[os.write(fd, view):]
        os.close(fd)

    def _watch(self, state: Running, readers: dict) -> None:
        """Collect records and output until the program exits and its pipes close, or its time is up."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.wake_r, selectors.EVENT_READ)
            for fd in readers:
                selector.register(fd, selectors.EVENT_READ)
            while readers:
                timeout = state.deadline - time.monotonic()
                if timeout <= 0:
                    if state.exited:
                        break  # pipes held open by background processes; they are killed next
                    state.timed_out = True
                    break
                for key, _ in selector.select(timeout):
                    if key.fd == self.wake_r:
                        _drain(self.wake_r)
                        continue
                    data = _read_some(key.fd)
                    if data is None:
                        continue
                    if data:
                        readers[key.fd](data)
                    else:
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        del readers[key.fd]
                if not state.exited:
                    self._poll_exit(state)
            for fd in readers:
                os.close(fd)
        # The pipes close a moment before the exit status is available (or the program closed them itself).
        while not state.exited and not state.timed_out:
            self._poll_exit(state)
            if not state.exited:
                state.timed_out = time.monotonic() >= state.deadline
                time.sleep(0.0005)

    def _poll_exit(self, state: Running) -> None:
        pid, status = os.waitpid(state.pid, os.WNOHANG)
        if pid:
            state.exited = True
            state.exit_status = _encode_status(status)
            # After its main process exits, the program's leftovers get a short grace to close the pipes.
            state.deadline = min(state.deadline, time.monotonic() + EXIT_GRACE)

    def _kill_all(self, pid: int) -> None:
        """Kill the program and everything it started; reap them all.

        Killing is repeated until nothing is left, because a fork bomb can create processes while a single
        kill(-1) walks the process list.
        """
        end = time.monotonic() + KILL_GRACE
        while time.monotonic() < end:
            if self.isolated:
                _kill(-1)  # PID 1 of the namespace: every other process in it
            else:
                _kill_group(pid)
                _kill(pid)
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                return
            time.sleep(0.001)

    def _fresh_workdir(self, limits: dict) -> str:
        if not self.isolated:
            return _private_tempdir()
        for target, options in (("/tmp", f"size={limits['disk_mb']}m,nr_inodes=16384,mode=0700"),
                                ("/dev/shm", "size=16m,mode=1777")):
            with contextlib.suppress(OSError):  # the first program of a slot finds nothing mounted there
                umount(target, MNT_DETACH)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
        return "/tmp"


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _read_some(fd: int) -> bytes | None:
    """Bytes read; b"" at end of file; None when nothing is available right now."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


# --------------------------------------------------------------------------------------------------
# The executor: PID 1 of the sandbox; passes jobs from the host to idle slots and results back.


class SlotHandle:
    def __init__(self, index: int, job_w: int, result_r: int) -> None:
        self.index, self.job_w, self.result_r = index, job_w, result_r
        self.job_id: int | None = None


class Executor:
    def __init__(self, config: dict, isolated: bool, privileged: bool, cgroups: Cgroups | None,
                 in_fd: int, out_fd: int) -> None:
        self.isolated, self.privileged, self.cgroups = isolated, privileged, cgroups
        self.site_paths: list[str] = config["site_paths"]
        self.in_fd, self.out_fd = in_fd, out_fd
        self.queue: list[dict] = []
        self.selector = selectors.DefaultSelector()
        self.selector.register(in_fd, selectors.EVENT_READ, None)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.slots = [self._spawn_slot(i) for i in range(config["slots"])]

    def _spawn_slot(self, index: int) -> SlotHandle:
        job_r, job_w = os.pipe2(os.O_CLOEXEC)
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(job_w)
                os.close(result_r)
                os.close(self.in_fd)
                os.close(self.out_fd)
                if self.isolated:  # a network namespace per slot: no abstract socket reaches another slot
                    unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET)
                    if os.fork():
                        os._exit(0)  # the slot server is reparented to the executor (PID 1)
                cgroup_fds = self.cgroups.fds[index] if self.cgroups else []
                Slot(index, self.isolated, self.privileged, cgroup_fds, self.site_paths).serve(job_r, result_w)
            except BaseException:
                traceback.print_exc()
            os._exit(1)
        os.close(job_r)
        os.close(result_w)
        handle = SlotHandle(index, job_w, result_r)
        self.selector.register(result_r, selectors.EVENT_READ, handle)
        return handle

    def serve(self) -> None:
        host_open = True
        while host_open or self.queue or any(s.job_id is not None for s in self.slots):
            self._dispatch()
            for key, _ in self.selector.select(1.0):
                if key.data is None:
                    try:
                        self.queue.append(read_message(self.in_fd))
                    except EOFError:
                        host_open = False
                        self.selector.unregister(self.in_fd)
                else:
                    self._on_result(key.data)
            _reap_orphans()

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.job_id is None and self.queue:
                job = self.queue.pop(0)
                slot.job_id = job["id"]
                write_message(slot.job_w, job)

    def _on_result(self, slot: SlotHandle) -> None:
        try:
            report = read_message(slot.result_r)
        except (EOFError, ValueError):
            self._replace(slot)
            return
        slot.job_id = None
        write_message(self.out_fd, report)

    def _replace(self, slot: SlotHandle) -> None:
        """A slot server died (it never runs untrusted code, so this is an infrastructure failure)."""
        self.selector.unregister(slot.result_r)
        os.close(slot.result_r)
        os.close(slot.job_w)
        if slot.job_id is not None:
            write_message(self.out_fd, {"id": slot.job_id, "infra_error": "a sandbox slot died"})
        self.slots[slot.index] = self._spawn_slot(slot.index)


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _encode_status(status: int) -> int:
    """Exit code, or 128 + signal number, as a shell would."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 255


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _private_tempdir() -> str:
    import tempfile  # only without isolation: keeps the forking process small

    return tempfile.mkdtemp(prefix="mucode-sbx-")


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _death_reason(state: Running) -> str:
    code = state.exit_status
    if state.timed_out:
        return "timeout"
    if code > 128:
        name = signal.Signals(code - 128).name if code - 128 in signal.valid_signals() else str(code - 128)
        hint = " (probably out of memory)" if name == "SIGKILL" else ""
        return f"the program was killed by {name}{hint}"
    return f"the program exited with status {code} before the test finished"


def _report(state: Running) -> dict:
    """Turn the records a program wrote into the verdicts the host receives.

    The records come from the program's process, so they are untrusted bytes: any line may be garbage
    (skipped), and a line with the program's nonce but a malformed shape (the program found the nonce and
    wrote its own records) fails the whole program. Nothing a program writes can raise here.
    """
    job = state.job
    n_tests = len(job["tests"])
    try:
        verdicts, program_error = _verdicts(state, n_tests)
    except MalformedRecord as error:
        program_error = f"Error: the program wrote a malformed verdict record ({error})"
        verdicts = [["failed", program_error, 0.0] for _ in range(n_tests)]
    output = bytes(state.output).decode("utf-8", "replace")
    if state.output_dropped:
        output += f"\n... [{state.output_dropped} more bytes of output dropped]"
    return {"id": job["id"], "verdicts": verdicts, "program_error": program_error, "output": output,
            "duration": round(time.perf_counter() - state.start, 6)}


class MalformedRecord(Exception):
    """A record that carries the program's nonce but not a shape the harness writes."""


def _records(state: Running) -> list[dict]:
    """The records that carry the program's nonce; lines that are not JSON objects are skipped, whatever
    they hold (a deeply nested line raises RecursionError, not ValueError: every exception is caught)."""
    found = []
    for line in bytes(state.records).decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except Exception:  # any bytes at all may arrive here
            continue
        if isinstance(record, dict) and record.get("n") == state.nonce:
            found.append(record)
    return found


def _test_verdict(record: dict) -> list:
    """[status, error, seconds] of a test record; MalformedRecord unless it has the harness's shape."""
    status, error, seconds = record.get("s"), record.get("e", ""), record.get("t", 0.0)
    if status not in TEST_STATUSES:
        raise MalformedRecord(f"status {str(status)[:40]!r}")
    if not isinstance(error, str):
        raise MalformedRecord("error is not text")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 1e6:
        raise MalformedRecord(f"time {str(seconds)[:40]!r}")
    return [status, error, float(seconds)]


def _verdicts(state: Running, n_tests: int) -> tuple[list[list], str]:
    limits = state.job["limits"]
    verdicts: list[list] = [["not_run", "", 0.0] for _ in range(n_tests)]
    seen: set[int] = set()
    program_error = ""
    loaded = False
    harness = ""
    for record in _records(state):
        if "load" in record and not loaded and not program_error:
            if record["load"] == "passed":
                loaded = True
            else:
                program_error = str(record.get("error", ""))
                status = "timeout" if record["load"] == "timeout" else "failed"
                verdicts = [[status, program_error, 0.0] for _ in range(n_tests)]
        elif "harness" in record:
            harness = str(record["harness"])
        elif "i" in record:
            index = record["i"]
            if not loaded:
                raise MalformedRecord("a test record before the program loaded")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_tests:
                raise MalformedRecord(f"test index {str(index)[:40]!r}")
            if index not in seen:
                seen.add(index)
                verdicts[index] = _test_verdict(record)
    if not loaded and not program_error:
        reason = _death_reason(state)
        if state.timed_out:
            program_error = f"TimeoutError: the program did not finish loading within {limits['test_timeout']:g} s"
        else:
            program_error = harness or f"Error: {reason} while loading"
        status = "timeout" if state.timed_out else "crashed"
        verdicts = [[status, program_error, 0.0] for _ in range(n_tests)]
    elif loaded:
        missing = [i for i in range(n_tests) if i not in seen]
        if missing:
            reason = _death_reason(state)
            first = missing[0]
            if state.timed_out:
                verdicts[first] = ["timeout", "TimeoutError: the program ran past its time limit", 0.0]
            else:
                verdicts[first] = ["crashed", f"Error: {reason}", 0.0]
            for i in missing[1:]:
                verdicts[i] = ["not_run", f"Not run: {reason}" if not state.timed_out else "Not run: timeout", 0.0]
    return verdicts, program_error


# --------------------------------------------------------------------------------------------------
# Entry point


def _protect_protocol_fds() -> tuple[int, int]:
    """Move the host pipes to high descriptors so that programs' stdio never touches them."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)
    return in_fd, out_fd


def main() -> None:
    in_fd, out_fd = _protect_protocol_fds()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    config = read_message(in_fd)
    # Started with -S (a smaller process forks several times faster); programs still import installed
    # packages from the host interpreter's site-packages (.pth files are not processed).
    sys.path.extend(p for p in config["site_paths"] if p not in sys.path)
    privileged = os.geteuid() == 0
    cgroups: Cgroups | None = None
    layers: list[str] = []
    warning = ""
    isolated = config["isolation"] != "none"
    if isolated:
        if config["cgroups"] and privileged:
            try:
                cgroups = Cgroups(config["slots"], config["memory_mb"] << 20, config["max_processes"])
                layers.append("cgroup")
            except OSError as error:
                cgroups = None
                warning = f"cgroups unavailable ({error}); relying on rlimits"
        try:
            child = enter_namespaces(privileged)
        except OSError as error:
            if cgroups:
                cgroups.remove()
            if config["isolation"] == "full":
                write_message(out_fd, {"ready": False, "error": f"user namespaces unavailable: {error}"})
                return
            isolated, cgroups, layers = False, None, []
            warning = f"user namespaces unavailable ({error}); running WITHOUT isolation"
        else:
            if child:  # outer: wait for the sandbox, then clean up the cgroups
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                os.close(in_fd)
                os.close(out_fd)
                _, status = os.waitpid(child, 0)
                if cgroups:
                    cgroups.remove()
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
            try:
                become_sandbox_root(privileged, cgroups)
            except OSError as error:
                write_message(out_fd, {"ready": False, "error": f"sandbox setup failed: {error}"})
                os._exit(4)
            layers = ["user", "net", "mount", "pid", "ipc", *layers, "uid" if privileged else "nocaps"]
    write_message(out_fd, {"ready": True, "layers": layers, "warning": warning,
                           "privileged": privileged, "pid": os.getpid()})
    Executor(config, isolated, privileged, cgroups, in_fd, out_fd).serve()


if __name__ == "__main__":
    main()
