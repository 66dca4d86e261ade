"""Where the benchmark files live: one resolution order shared by every loader.

Order: an explicit path (a file or a folder) > the ``MUCODE_DATA_DIR`` folder > a ``shared/data`` folder
holding ``mbpp.jsonl``, found by walking up from the working directory and from this package > the loader's
fallback when no explicit path was given: the copy of ``mbpp.jsonl`` bundled in the package (``BUNDLED_DIR``),
the EvalPlus files in the user cache (downloaded on first use, `mucode.problems.fetch`). The walk makes a
checkout next to the shared data (``/work/main`` beside ``/work/shared``) work with no configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mucode.errors import DataError

DATA_DIR_ENV = "MUCODE_DATA_DIR"
#: The file whose presence marks a ``shared/data`` folder during the upward walk.
MARKER_FILE = "mbpp.jsonl"
#: Data files shipped inside the package: ``mbpp.jsonl.gz`` and its licence (``MBPP-LICENSE.md``).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

PathArg = str | os.PathLike[str]


def find_data_dir() -> Path | None:
    """The data folder from ``MUCODE_DATA_DIR`` or the upward walk; None when neither gives one.

    A set but missing ``MUCODE_DATA_DIR`` is an error rather than a silent fall-through, so a typo in the
    variable cannot make a run read some other copy of the data.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise DataError(f"{DATA_DIR_ENV}={env} is not a folder")
        return folder
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in _shared_data_candidates(start):
            if (folder / MARKER_FILE).is_file():
                return folder
    return None


def resolve_data_file(pattern: str, path: PathArg | None = None, *, hub_hint: str = "",
                      fallback: Callable[[], Path] | None = None) -> Path:
    """The file named ``pattern`` (a glob such as ``MbppPlus*.jsonl`` allowed) in the resolved data folder.

    ``path`` may be the file itself or the folder holding it. When a glob matches several files the highest
    version wins, so dropping a newer EvalPlus release next to an older one picks the newer. ``hub_hint`` is
    appended to the not-found message for datasets that can also come from the Hugging Face hub.
    ``fallback()`` gives the file when no explicit ``path`` was given and the data folder (if any) has none:
    the bundled or cached copy. An explicit path that lacks the file is always an error.
    """
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            return given
        folder, where = (given, f"in {given}") if given.is_dir() else (None, f"{given} does not exist")
    else:
        folder = find_data_dir()
        where = f"in {folder}" if folder else _walk_description()
    match = _newest_match(folder, pattern) if folder is not None else None
    if match is None and path is None and fallback is not None:
        return fallback()
    if match is None:
        raise DataError(
            f"{pattern} not found: {where}; pass its path or folder, or set {DATA_DIR_ENV} to the folder "
            f"that holds it{hub_hint}"
        )
    return match


def _shared_data_candidates(start: Path) -> Iterator[Path]:
    for folder in (start, *start.parents):
        yield folder / "shared" / "data"


def _walk_description() -> str:
    return f"{DATA_DIR_ENV} is unset and no shared/data folder with {MARKER_FILE} is above {Path.cwd()}"


def _newest_match(folder: Path, pattern: str) -> Path | None:
    matches = [p for p in folder.glob(pattern) if p.is_file()]
    return max(matches, key=_version_key, default=None)


def _version_key(path: Path) -> tuple[tuple[int, ...], str]:
    """Order files by the version in their name (``v0.10.0`` after ``v0.2.0``); unversioned names first."""
    found = re.search(r"v?(\d+(?:\.\d+)*)", path.name)
    version = tuple(int(part) for part in found.group(1).split(".")) if found else ()
    return version, path.name
