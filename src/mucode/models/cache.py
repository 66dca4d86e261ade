"""The model cache: ``<home>/models/<name>/<file>`` plus a ``manifest.json`` written only after verification.

A file counts as downloaded when it has the registry's size and a manifest whose digest passes the registry's
check. The manifest is written after the file is renamed into place, and the file is renamed only after its
size and sha256 were checked, so a crash at any point leaves either a ``.partial`` file (never read) or a
file without a manifest (re-verified by the next pull). Later lookups check the size only: hashing 500 MB on
every backend start would cost seconds for nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from mucode.errors import DataError
from mucode.models.registry import ModelSpec
from mucode.runs import write_json

HOME_ENV = "MUCODE_HOME"
DEFAULT_HOME = "~/.cache/mucode"
MANIFEST = "manifest.json"
CHUNK = 4 << 20
FILE_MODE = 0o644  # readable by every user of a shared cache (mkstemp creates 0o600)

#: Where the cache lives: an explicit folder, or None for ``$MUCODE_HOME`` / the default.
Home = str | os.PathLike[str] | None
#: Called as ``progress(description, done, total)`` in bytes while a model file is written or hashed; a step
#: of unknown size (pip's download) reports (0, 0) once, when it starts; the next report means it ended.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Manifest:
    """What was verified about a model file, and where it came from."""

    name: str
    file: str
    size: int
    sha256: str
    source: str
    time: str


def model_home(home: Home = None) -> Path:
    """The cache root: ``home`` if given, else ``$MUCODE_HOME``, else ``~/.cache/mucode``."""
    return Path(os.path.expanduser(home or os.environ.get(HOME_ENV) or DEFAULT_HOME))


def model_dir(spec: ModelSpec, home: Home = None) -> Path:
    return model_home(home) / "models" / spec.name


def model_file(spec: ModelSpec, home: Home = None) -> Path:
    return model_dir(spec, home) / spec.file


def read_manifest(spec: ModelSpec, home: Home = None) -> Manifest | None:
    """The manifest of ``spec`` if it exists, parses and describes this model's file; else None."""
    try:
        manifest = Manifest(**json.loads((model_dir(spec, home) / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return manifest if (manifest.name, manifest.file) == (spec.name, spec.file) else None


def verified_manifest(spec: ModelSpec, home: Home = None) -> Manifest | None:
    """The manifest if the file is in place with the right size and a digest that passes the check; else None."""
    manifest = read_manifest(spec, home)
    try:
        size = model_file(spec, home).stat().st_size
    except OSError:
        return None
    if manifest is None or size != spec.size or manifest.size != spec.size:
        return None
    return manifest if spec.digest_matches(manifest.sha256) else None


def install(spec: ModelSpec, chunks: Iterable[bytes], source: str, home: Home = None,
            progress: Progress | None = None) -> Path:
    """Write ``chunks`` to the model's file through a ``.partial`` sibling, checking size and sha256 on the way.

    Only a file that passed both checks is renamed into place; on any failure the partial file is deleted and
    the error (a DataError for a mismatch) says what was expected and what came.
    """
    final = model_file(spec, home)
    digest = write_verified(final, chunks, label=f"model {spec.name}", size=spec.size,
                            digest_matches=spec.digest_matches, expected_digest=spec.expected_digest,
                            description=f"assembling {spec.file}", progress=progress)
    _write_manifest(spec, digest, source, home)
    return final


def write_verified(final: Path, chunks: Iterable[bytes], *, label: str, size: int,
                   digest_matches: Callable[[str], bool], expected_digest: str, description: str,
                   progress: Progress | None = None) -> str:
    """Write ``chunks`` to ``final`` through a ``.partial`` sibling that is renamed into place only after its size
    and sha256 passed; the digest. On a mismatch (a DataError starting with ``label``) nothing is left behind.

    Models and the downloaded EvalPlus files both go through here.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    with _partial_file(final) as (partial, stream):
        digest = _write_hashed(label, size, digest_matches, expected_digest, chunks, stream,
                               description, progress)
        partial.chmod(FILE_MODE)
        os.replace(partial, final)
    return digest


def adopt(spec: ModelSpec, source: str, home: Home = None,
          progress: Progress | None = None) -> Path | None:
    """Verify a file already in place but lacking a manifest (an interrupted pull); its path if it passes."""
    final = model_file(spec, home)
    if not final.is_file() or final.stat().st_size != spec.size:
        return None
    digest = _hash(file_chunks(final), f"verifying {spec.file}", spec.size, progress)
    if not spec.digest_matches(digest):
        return None
    _write_manifest(spec, digest, source, home)
    return final


def file_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of ``path`` in CHUNK-sized pieces."""
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


@contextmanager
def _partial_file(final: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A uniquely named ``<final>.<random>.partial`` next to ``final``, deleted unless renamed into place.

    Unique names let two processes pull the same model at once; the last verified rename wins.
    """
    descriptor, name = tempfile.mkstemp(dir=final.parent, prefix=f"{final.name}.", suffix=".partial")
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield partial, stream
    finally:
        partial.unlink(missing_ok=True)


def _write_hashed(label: str, size: int, digest_matches: Callable[[str], bool], expected_digest: str,
                  chunks: Iterable[bytes], stream: IO[bytes], description: str, progress: Progress | None) -> str:
    """Write and hash ``chunks``; raise DataError unless size and digest are the expected ones. Flushed to disk."""
    written = 0

    def tee() -> Iterator[bytes]:
        nonlocal written
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise DataError(f"{label}: source is larger than the expected {size:,} bytes")
            stream.write(chunk)
            yield chunk

    digest = _hash(tee(), description, size, progress)
    if written != size:
        raise DataError(f"{label}: expected {size:,} bytes, got {written:,}")
    if not digest_matches(digest):
        raise DataError(f"{label}: sha256 mismatch: expected {expected_digest}, got {digest}")
    stream.flush()
    os.fsync(stream.fileno())
    return digest


def _hash(chunks: Iterable[bytes], description: str, total: int, progress: Progress | None) -> str:
    """The sha256 hex digest of ``chunks``, reporting progress in bytes."""
    digest, done = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(description, done, total)
    return digest.hexdigest()


def _write_manifest(spec: ModelSpec, digest: str, source: str, home: Home) -> None:
    """Write the manifest atomically (temporary sibling, then rename)."""
    manifest = Manifest(name=spec.name, file=spec.file, size=spec.size, sha256=digest, source=source,
                        time=datetime.now(UTC).isoformat(timespec="seconds"))
    write_json(model_dir(spec, home) / MANIFEST, asdict(manifest))
