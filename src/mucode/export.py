"""A fine-tuned transformers model back to GGUF, so the fast llama.cpp backend can run it (`mucode export`).

Fine-tuning happens in transformers, on a base model that `mucode.backends.hf.dequantised_dir` loaded from a
GGUF file. Rather than rebuild a GGUF from the HF folder (tokenizer conversion, chat template, every
hyperparameter key), the export takes that original file as a *template*: every metadata key is copied from it
unchanged, and only the tensors come from the fine-tuned model, renamed with gguf's own HF → GGUF name map. So
the exported file tokenizes, templates and runs exactly like the base model did, with the new weights.

What the template also fixes: the tensor set and every shape (a model whose config differs from the
template's is a ConfigError naming the first tensor or config field that differs), whether the output layer
is tied to the embedding (no ``output.weight`` in the template: lm_head is not written), and the row order of
the attention projections: llama-architecture GGUFs store q/k rows permuted for llama.cpp's rotary layout
(transformers undoes it on load), so the export re-applies it.

``ftype``: f32, f16 and bf16 are written directly (1-D norms and biases stay f32, as llama.cpp expects); a
quantised type (q8_0, q4_0, q4_k_m, ...) is written as f16 first and then quantised by llama.cpp's own
quantiser (`mucode.models.pull.requantize`). The file is written under a temporary name in the output's
folder and renamed at the end, so a killed export never leaves a valid-looking half file; a manifest
(``<out>.json``: digest, size, sources, versions) is written next to it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import (
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    Keys,
    LlamaFileType,
    get_tensor_name_map,
)
from safetensors import safe_open

from mucode.backends.hf import dequantised_dir, load_model, locate_model
from mucode.errors import ConfigError
from mucode.models import ModelRef
from mucode.models.pull import requantize
from mucode.runs import file_sha256, replacing, versions, write_json

#: ftype → (type of tensors with 2+ dimensions, the file's ``general.file_type``); 1-D tensors are always F32
DIRECT_FTYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
}
#: what a quantised export writes before llama.cpp quantises it (what llama.cpp's own converter feeds its quantiser)
QUANTISE_FROM = "f16"
#: Packages whose versions the manifest records: they determine the exported bytes.
EXPORT_PACKAGES = ("torch", "gguf", "safetensors", "transformers", "peft")
#: architectures whose GGUF q/k rows are permuted for llama.cpp's rotary layout (transformers' LlamaTensorProcessor
#: reverses exactly these on load)
ROPE_PERMUTED_ARCHS = frozenset({"llama"})
#: config.json fields that llama.cpp reads from the metadata, not from tensor shapes, and the template's keys for
#: them (after ``<arch>.``): a mismatch would silently run another model
HYPERPARAMETERS = (("num_hidden_layers", "block_count"), ("num_attention_heads", "attention.head_count"),
                   ("num_key_value_heads", "attention.head_count_kv"),
                   ("rms_norm_eps", "attention.layer_norm_rms_epsilon"), ("rope_theta", "rope.freq_base"))
MANIFEST_SUFFIX = ".json"
EMBEDDING, OUTPUT = "token_embd.weight", "output.weight"
# How each stored type is produced from a torch tensor: the dtype to cast to and the dtype numpy sees (numpy has
# no bfloat16, so bf16 goes out as its raw 16-bit patterns).
_STORAGE = {GGMLQuantizationType.F32: (torch.float32, torch.float32, np.float32),
            GGMLQuantizationType.F16: (torch.float16, torch.float16, np.float16),
            GGMLQuantizationType.BF16: (torch.bfloat16, torch.int16, np.int16)}


@dataclass(frozen=True)
class _Source:
    """One tensor of the fine-tuned model, loaded only when it is written (a 1.5B model in fp32 is 6 GB)."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]


@dataclass(frozen=True)
class _Planned:
    """One tensor of the output file, in the template's order; ``rope_heads``: permute its rows for that many heads."""

    name: str
    source: _Source
    rope_heads: int | None


@dataclass(frozen=True)
class _Template:
    """The GGUF whose metadata, tensor names and shapes the export reproduces."""

    ref: ModelRef
    reader: GGUFReader
    arch: str
    shapes: dict[str, tuple[int, ...]]  # in torch's (row-major) order, the reverse of GGUF's

    def value(self, key: str) -> Any:
        field = self.reader.get_field(key)
        return field.contents() if field is not None else None


def export_gguf(model_dir: str | os.PathLike[str], template_gguf: str | os.PathLike[str],
                out: str | os.PathLike[str], *, ftype: str = "f16") -> dict[str, Any]:
    """Write the model in ``model_dir`` as a GGUF at ``out``, laid out like ``template_gguf``; the manifest.

    ``model_dir``: a Hugging Face model folder with safetensors weights, or a PEFT adapter folder, which is
    merged onto the template's dequantised weights (the base it was trained on when the base came from this
    file). ``template_gguf``: the GGUF file the base model was loaded from, or its registry name. ``ftype``:
    f32, f16, bf16 or a llama.cpp quantisation type (q8_0, q4_0, q4_k_m, ...). The manifest is also written
    to ``<out>.json``. Raises ConfigError for an unknown ftype, a model that does not match the template, or a
    folder that is neither kind.
    """
    ftype = ftype.lower()
    _check_ftype(ftype)
    model = Path(model_dir).expanduser()
    kind = _model_kind(model)
    target = _check_out(Path(out).expanduser())
    template = _read_template(template_gguf)
    if target.exists() and target.resolve() == template.ref.path.resolve():
        raise ConfigError(f"output {target} is the template itself; write the export to another file")
    name = f"{template.value(Keys.General.NAME) or template.ref.path.stem} (fine-tuned: {model.resolve().name})"
    found = versions(*EXPORT_PACKAGES)
    with _model_tensors(model, kind, template.ref) as (sources, config):
        plan = _plan(template, sources, config, model)
        quantiser = _write_atomically(template, plan, target, ftype, name)
    if quantiser is not None:
        found["llama-cpp-python"] = quantiser
    manifest = {"file": target.name, "sha256": file_sha256(target), "size": target.stat().st_size, "ftype": ftype,
                "model": str(model.resolve()), "model_kind": kind, "template": str(template.ref.path),
                "template_sha256": template.ref.sha256, "architecture": template.arch, "tensors": len(plan),
                "versions": found}
    write_json(manifest_path(target), manifest)
    return manifest


def _write_atomically(template: _Template, plan: list[_Planned], target: Path, ftype: str, name: str) -> str | None:
    """Write the GGUF under a temporary name beside ``target`` and rename it at the end, so ``target`` is either
    the previous file or the complete new one; the llama-cpp-python version when it quantised."""
    direct = ftype if ftype in DIRECT_FTYPES else QUANTISE_FROM
    with replacing(target) as written:
        floats = written.with_suffix(f".{QUANTISE_FROM}.tmp")  # the quantiser's input, when there is one
        try:
            _write_gguf(template, plan, written if direct == ftype else floats, DIRECT_FTYPES[direct], name)
            quantiser = requantize(floats, written, ftype) if direct != ftype else None
        finally:
            floats.unlink(missing_ok=True)
    return quantiser


def manifest_path(gguf_file: str | os.PathLike[str]) -> Path:
    """Where `export_gguf` writes the manifest of ``gguf_file``: ``<file>.json`` beside it."""
    path = Path(gguf_file)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def rope_permute(weights: torch.Tensor, heads: int) -> torch.Tensor:
    """q/k rows from transformers' rotary layout (each head's two halves rotate together) to the layout llama.cpp
    expects in llama-architecture GGUFs (adjacent pairs rotate together): within each head, rows ``i`` and
    ``i + d/2`` become rows ``2i`` and ``2i + 1``. The inverse of what transformers' GGUF loader applies."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


# ------------------------------------------------------------------------------------------- inputs


def _check_ftype(ftype: str) -> None:
    """Fail before any work on a type neither written directly nor known to llama.cpp's quantiser."""
    if ftype in DIRECT_FTYPES:
        return
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(f"exporting to {ftype} needs llama-cpp-python to quantise (install it with "
                          "`pip install 'mucode[llamacpp]'`), or pass --ftype f32, f16 or bf16") from None
    if not hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}"):
        raise ConfigError(f"unknown ftype {ftype!r}: use f32, f16, bf16 or a llama.cpp quantisation type "
                          "(q8_0, q4_0, q4_k_m, q5_k_m, ...)")


def _read_template(spec: str | os.PathLike[str]) -> _Template:
    ref = locate_model(str(spec))
    if ref.format != "gguf":
        raise ConfigError(f"template {spec} is a Hugging Face folder; it must be the GGUF file (or registry name) "
                          "the base model was loaded from")
    reader = GGUFReader(ref.path)
    arch = reader.get_field(Keys.General.ARCHITECTURE)
    if arch is None:
        raise ConfigError(f"template {ref.path} has no {Keys.General.ARCHITECTURE} key")
    shapes = {tensor.name: tuple(int(n) for n in reversed(tensor.shape)) for tensor in reader.tensors}
    return _Template(ref=ref, reader=reader, arch=arch.contents(), shapes=shapes)


def _check_out(target: Path) -> Path:
    if target.suffix != ".gguf":
        raise ConfigError(f"output {target} must end in .gguf (mucode loads GGUF models by that suffix)")
    return target


def _model_kind(model: Path) -> str:
    """The folder's kind, "hf" (transformers) or "peft-adapter", checked before any slow work."""
    if (model / "config.json").is_file():
        return "hf"
    if (model / "adapter_config.json").is_file():
        return "peft-adapter"
    raise ConfigError(f"{model} is neither a Hugging Face model folder (config.json) nor a PEFT adapter folder "
                      "(adapter_config.json)")


@contextlib.contextmanager
def _model_tensors(model: Path, kind: str, template: ModelRef) -> Iterator[tuple[dict[str, _Source], dict[str, Any]]]:
    """The fine-tuned model's tensors by HF name, and its config."""
    if kind == "hf":
        config = json.loads((model / "config.json").read_text())
        with _safetensors(model) as sources:
            yield sources, config
    else:
        merged = load_model(dequantised_dir(template), torch.float32, "cpu", str(model))
        state = merged.state_dict()  # a tied model lists lm_head too; `_tie_output` sorts it out
        yield ({name: _Source(name, tuple(tensor.shape), tensor.detach) for name, tensor in state.items()},
               merged.config.to_dict())


@contextlib.contextmanager
def _safetensors(model: Path) -> Iterator[dict[str, _Source]]:
    files = sorted(file for file in model.glob("*.safetensors") if not file.name.startswith("adapter_model"))
    if not files:
        raise ConfigError(f"{model} has no .safetensors weights (save it with save_pretrained, which writes them)")
    with contextlib.ExitStack() as stack:
        sources = {}
        for file in files:
            handle = stack.enter_context(safe_open(str(file), framework="pt"))
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                shape = tuple(handle.get_slice(name).get_shape())
                sources[name] = _Source(name, shape, functools.partial(handle.get_tensor, name))
        yield sources


# ------------------------------------------------------------------------------------------- checks


def _plan(template: _Template, sources: Mapping[str, _Source], config: Mapping[str, Any],
          model: Path) -> list[_Planned]:
    """The template's tensors in its order, each with the fine-tuned tensor that fills it; ConfigError naming
    the first tensor or config field where the model and the template disagree."""
    _check_hyperparameters(template, config, model)
    mapped = _gguf_names(template, sources, model)
    _tie_output(template, mapped, model)
    for name, source in mapped.items():  # a wrong tensor first: it says more than the ones missing after it
        if name not in template.shapes:
            raise ConfigError(f"tensor {source.name} of {model} ({name}) is not in template "
                              f"{template.ref.path.name}; is it the base model's file?")
        if source.shape != template.shapes[name]:
            raise ConfigError(f"tensor {source.name} of {model} ({name}) has shape {list(source.shape)}, the "
                              f"template {list(template.shapes[name])}; is it the base model's file?")
    for name in template.shapes:
        if name not in mapped:
            raise ConfigError(f"tensor {name} of template {template.ref.path.name} has no counterpart in {model}")
    return [_Planned(name, mapped[name], _rope_heads(template, name)) for name in template.shapes]


def _check_hyperparameters(template: _Template, config: Mapping[str, Any], model: Path) -> None:
    for field, key in HYPERPARAMETERS:
        ours = config.get(field)
        if ours is None and field == "rope_theta":  # transformers 5 nests it
            ours = (config.get("rope_parameters") or {}).get("rope_theta")
        theirs = template.value(f"{template.arch}.{key}")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (ours, theirs))
        if numbers and not math.isclose(ours, theirs, rel_tol=1e-6):  # the template stores floats as f32
            raise ConfigError(f"{model}/config.json has {field} = {ours}, template {template.ref.path.name} "
                              f"{template.arch}.{key} = {theirs}; is it the base model's file?")


def _gguf_names(template: _Template, sources: Mapping[str, _Source], model: Path) -> dict[str, _Source]:
    """The fine-tuned tensors by GGUF name (gguf's own HF → GGUF map for the template's architecture)."""
    arch = next((key for key, value in MODEL_ARCH_NAMES.items() if value == template.arch), None)
    if arch is None:
        raise ConfigError(f"gguf {importlib.metadata.version('gguf')} does not know architecture {template.arch!r}")
    name_map = get_tensor_name_map(arch, int(template.value(f"{template.arch}.block_count") or 0))
    mapped: dict[str, _Source] = {}
    for name, source in sources.items():
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ConfigError(f"tensor {name} of {model} has no GGUF name in architecture {template.arch}")
        mapped[gguf_name] = source
    return mapped


def _tie_output(template: _Template, mapped: dict[str, _Source], model: Path) -> None:
    """Make the output layer what the template has: no ``output.weight`` means llama.cpp reuses the embedding,
    so lm_head is dropped (refused if it is not the embedding: that would silently lose trained weights); a
    template with ``output.weight`` and a tied model gets the embedding written there."""
    if OUTPUT in template.shapes and OUTPUT not in mapped and EMBEDDING in mapped:
        mapped[OUTPUT] = mapped[EMBEDDING]
    elif OUTPUT not in template.shapes and OUTPUT in mapped and EMBEDDING in mapped:
        if not torch.equal(mapped[OUTPUT].load(), mapped[EMBEDDING].load()):
            raise ConfigError(f"{model} has an lm_head that differs from its embeddings, but template "
                              f"{template.ref.path.name} ties them (it has no {OUTPUT})")
        del mapped[OUTPUT]


def _rope_heads(template: _Template, name: str) -> int | None:
    if template.arch not in ROPE_PERMUTED_ARCHS:
        return None
    if ".attn_q." in name:
        return int(template.value(f"{template.arch}.attention.head_count"))
    if ".attn_k." in name:
        heads = template.value(f"{template.arch}.attention.head_count_kv")
        return int(heads if heads is not None else template.value(f"{template.arch}.attention.head_count"))
    return None


# ------------------------------------------------------------------------------------------- writing


def _write_gguf(template: _Template, plan: list[_Planned], path: Path,
                types: tuple[GGMLQuantizationType, LlamaFileType], name: str) -> None:
    """Stream the planned tensors into ``path``: the tensor table is written from the shapes, then one tensor at
    a time is loaded, converted and written, so memory holds one tensor, not the model."""
    matrix_type, file_type = types
    writer = GGUFWriter(None, template.arch)
    alignment = template.value(Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment)
    _copy_metadata(template, writer, {Keys.General.NAME: (name, GGUFValueType.STRING),
                                      Keys.General.FILE_TYPE: (int(file_type), GGUFValueType.UINT32)})
    stored = [matrix_type if len(item.source.shape) > 1 else GGMLQuantizationType.F32 for item in plan]
    for item, ggml_type in zip(plan, stored, strict=True):
        numpy_type = np.dtype(_STORAGE[ggml_type][2])
        writer.add_tensor_info(item.name, item.source.shape, numpy_type,
                               math.prod(item.source.shape) * numpy_type.itemsize, raw_dtype=ggml_type)
    try:
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for item, ggml_type in zip(plan, stored, strict=True):
            writer.write_tensor_data(_tensor_bytes(item, ggml_type))
    finally:
        writer.close()


def _copy_metadata(template: _Template, writer: GGUFWriter,
                   overrides: Mapping[str, tuple[Any, GGUFValueType]]) -> None:
    """Every key of the template (tokenizer, chat template, hyperparameters) but those the writer sets itself and
    ``overrides``, which replace or add keys."""
    for field in template.reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == Keys.General.ARCHITECTURE or field.name in overrides:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for key, (value, value_type) in overrides.items():
        writer.add_key_value(key, value, value_type)


def _tensor_bytes(item: _Planned, ggml_type: GGMLQuantizationType) -> np.ndarray:
    cast, view, _ = _STORAGE[ggml_type]
    with torch.no_grad():
        tensor = item.source.load().detach().to("cpu", torch.float32)
        if item.rope_heads is not None:
            tensor = rope_permute(tensor, item.rope_heads)
        return tensor.to(cast).contiguous().view(view).numpy()
