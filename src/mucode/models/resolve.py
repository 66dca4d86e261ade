"""Turn what a user typed (a registry name, a ``.gguf`` file, a Hugging Face model folder) into one ModelRef.

Every backend calls `resolve_model`, so the rules and the messages for a model that is not there live here
once. A registered model that is not in the cache is pulled on first use (`mucode.models.pull`, size and sha256
checked, a progress bar on stderr), so every command that loads a model works on a fresh install; with
``download=False`` (or ``MUCODE_NO_PULL=1``) it is an error that says which command fetches it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mucode.errors import ConfigError
from mucode.models.cache import Home, Progress, model_dir, model_file, verified_manifest
from mucode.models.registry import DEFAULT_MODEL, REGISTRY, ModelFormat, ModelSpec

GGUF_MAGIC = b"GGUF"
#: Set to 1 to make a registered model that is not in the cache an error instead of a download.
NO_PULL_ENV = "MUCODE_NO_PULL"


@dataclass(frozen=True)
class ModelRef:
    """A model on disk, ready to load: a GGUF file or a Hugging Face model folder.

    ``sha256`` is known for registered models (verified when pulled); ``hf_repo`` names the original weights
    on the hub where the registry knows them.
    """

    name: str
    path: Path
    format: ModelFormat
    sha256: str | None = None
    hf_repo: str | None = None

    @property
    def model_id(self) -> str:
        """What records store: the file name and a short digest (same weights, same id in every backend)."""
        return f"{self.path.name}@{self.sha256[:12]}" if self.sha256 else self.name


@dataclass(frozen=True)
class ModelStatus:
    """One row of `list_models`: a registered model and whether it is in the cache."""

    name: str
    file: str
    size: int
    format: ModelFormat
    quant: str
    downloaded: bool
    path: Path
    default: bool


def resolve_model(spec: str, *, home: Home = None, download: bool = True,
                  progress: Progress | None = None) -> ModelRef:
    """The model ``spec`` names: a registry name, a ``.gguf`` file, or a folder with config.json.

    A registry model that is not in the cache is pulled first (from the default sources, with ``progress`` or
    else a progress bar on stderr) unless ``download`` is False or ``$MUCODE_NO_PULL`` is set. Raises
    ConfigError naming ``spec`` (and the registered names, when it is none of the three); a failed pull raises
    what `pull` raises (BackendError when no source is reachable, DataError for wrong bytes).
    """
    if spec in REGISTRY:
        registered = REGISTRY[spec]
        if download and not os.environ.get(NO_PULL_ENV) and verified_manifest(registered, home) is None:
            _pull_now(registered, home, progress)
        return _registered(registered, home)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf" and _is_gguf(path):
        return ModelRef(name=path.stem, path=path.resolve(), format="gguf")
    if path.is_dir() and (path / "config.json").is_file():
        return ModelRef(name=path.name, path=path.resolve(), format="hf")
    raise ConfigError(_why_not_a_model(spec, path))


def resolve_gguf(spec: str, backend: str) -> ModelRef:
    """The GGUF file ``spec`` names, for a backend that reads only GGUF (llamacpp, openvino); a Hugging Face
    folder is a ConfigError saying how to run or convert it."""
    ref = resolve_model(spec)
    if ref.format != "gguf":
        raise ConfigError(f"the {backend} backend reads .gguf models; {spec} is a Hugging Face folder (use "
                          "--backend hf, or `mucode export --model DIR --template BASE.gguf --out F.gguf`)")
    return ref


def list_models(home: Home = None) -> list[ModelStatus]:
    """Every registered model, whether it is downloaded and verified, and where its file is (or would be)."""
    return [ModelStatus(name=spec.name, file=spec.file, size=spec.size, format=spec.format, quant=spec.quant,
                        downloaded=verified_manifest(spec, home) is not None, path=model_file(spec, home),
                        default=spec.name == DEFAULT_MODEL)
            for spec in REGISTRY.values()]


def _registered(spec: ModelSpec, home: Home) -> ModelRef:
    """A pulled registry model (size checked now, digest checked when it was pulled)."""
    manifest = verified_manifest(spec, home)
    if manifest is None:
        raise ConfigError(f"model {spec.name} is not downloaded (or not verified) in {model_dir(spec, home)}; "
                          f"run `mucode models pull {spec.name}`")
    return ModelRef(name=spec.name, path=model_file(spec, home), format=spec.format, sha256=manifest.sha256,
                    hf_repo=spec.hf_repo)


def _pull_now(spec: ModelSpec, home: Home, progress: Progress | None) -> None:
    """Pull ``spec`` into the cache, reporting to ``progress`` or to a progress bar on stderr."""
    from mucode.models.progress import progress_bar
    from mucode.models.pull import pull

    if progress is not None:
        pull(spec.name, home=home, progress=progress)
        return
    with progress_bar() as report:
        report(f"model {spec.name} is not downloaded yet: pulling it into {model_dir(spec, home)}", 0, 0)
        pull(spec.name, home=home, progress=report)


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def _why_not_a_model(spec: str, path: Path) -> str:
    """The message for a ``spec`` that `resolve_model` cannot use, as specific as the file system allows."""
    if path.is_dir():
        return f"model folder {spec} has no config.json, so it is not a Hugging Face model folder"
    if path.is_file() and path.suffix == ".gguf":
        return f"model file {spec} is not a GGUF file (it does not start with {GGUF_MAGIC!r}; a Git LFS pointer?)"
    if path.exists():
        return f"model file {spec} is not a .gguf file"
    return (f"model {spec!r} is neither a registered name ({', '.join(REGISTRY)}) nor an existing .gguf file "
            "or Hugging Face model folder")
