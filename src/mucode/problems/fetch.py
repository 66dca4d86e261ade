"""The EvalPlus release files (MBPP+, HumanEval+): downloaded once into the user cache when no data folder has them.

Each file is the decompression of the official release asset (``*.jsonl.gz`` on the EvalPlus release
repositories), pinned by the size and sha256 of the decompressed file. The download streams through gzip into a
``.partial`` file in ``<cache>/datasets`` that is renamed into place only when size and digest match (the model
cache's `write_verified`), so an interrupted or wrong download never leaves a file that a later run reads.
The cache root is the model cache's: ``$MUCODE_HOME`` or ``~/.cache/mucode``.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mucode.errors import DataError
from mucode.models.cache import CHUNK, Home, Progress, model_home, write_verified
from mucode.problems.datadir import DATA_DIR_ENV
from mucode.runs import file_sha256

CACHE_SUBDIR = "datasets"
#: Seconds to wait for the server to answer (and between two reads of the body).
TIMEOUT = 60.0


@dataclass(frozen=True)
class Release:
    """One EvalPlus release file: its name in data folders and the cache, the asset it comes from, its checks."""

    dataset: str
    file: str
    url: str
    size: int
    sha256: str


#: The versions mucode's loaders are tested against (shared/data/README.md describes each file); tests point
#: ``url`` at a local server.
RELEASES: dict[str, Release] = {release.dataset: release for release in (
    Release("mbpp+", "MbppPlus-v0.2.0.jsonl",
            "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
            2_592_369, "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad"),
    Release("humaneval+", "HumanEvalPlus-v0.1.10.jsonl",
            "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz",
            7_714_666, "42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f"),
)}


def cache_dir(home: Home = None) -> Path:
    """Where downloaded dataset files live: ``<cache root>/datasets``."""
    return model_home(home) / CACHE_SUBDIR


def cached_file(dataset: str, home: Home = None) -> Path | None:
    """The cached release file of ``dataset`` ("mbpp+" or "humaneval+"), None when there is none.

    Its sha256 is checked on every lookup (a few milliseconds for these sizes), because a user may have put the
    file there by hand; other bytes are a DataError, not a silent re-download.
    """
    release = RELEASES[dataset]
    path = cache_dir(home) / release.file
    if not path.is_file():
        return None
    digest = file_sha256(path)
    if digest != release.sha256:
        raise DataError(f"{path} is not {release.file} as released (sha256 {digest}, expected "
                        f"{release.sha256}); delete it to download it again, or put the file you want in a folder "
                        f"and set {DATA_DIR_ENV} to it")
    return path


def fetch_release(dataset: str, *, home: Home = None, progress: Progress | None = None) -> Path:
    """The cached file of ``dataset``, downloaded, decompressed and verified first if it is not there yet.

    Raises DataError (one line) when the download fails or delivers other bytes; the message says how to
    provide the file by hand. Without ``progress``, a progress bar goes to stderr.
    """
    found = cached_file(dataset, home)
    if found is not None:
        return found
    release = RELEASES[dataset]
    final = cache_dir(home) / release.file
    if progress is not None:
        _download(release, final, progress)
    else:
        from mucode.models.progress import progress_bar

        with progress_bar() as report:
            _download(release, final, report)
    return final


def _download(release: Release, final: Path, progress: Progress) -> None:
    label = f"{release.file} from {release.url}"
    try:
        with urllib.request.urlopen(release.url, timeout=TIMEOUT) as response:
            write_verified(final, _gunzip(response), label=label, size=release.size,
                           digest_matches=lambda digest: digest == release.sha256, expected_digest=release.sha256,
                           description=f"downloading {release.file}", progress=progress)
    except DataError as error:
        raise DataError(f"{error}; {_by_hand(release, final)}") from None
    except (OSError, EOFError, zlib.error, ValueError) as error:  # URLError, HTTPError, timeouts, bad gzip
        raise DataError(f"{release.file} is not in the data folder or the cache, and downloading {release.url} "
                        f"failed ({_reason(error)}); {_by_hand(release, final)}") from None


def _gunzip(stream: object) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream, in CHUNK-sized pieces."""
    with gzip.GzipFile(fileobj=stream, mode="rb") as unpacked:  # type: ignore[arg-type]
        while chunk := unpacked.read(CHUNK):
            yield chunk


def _by_hand(release: Release, final: Path) -> str:
    return (f"to provide it by hand, decompress that file to {final}, or put {release.file} in a folder and set "
            f"{DATA_DIR_ENV} to it")


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return " ".join(str(error).split()) or type(error).__name__

