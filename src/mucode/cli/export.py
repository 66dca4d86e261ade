"""``mucode export``: a fine-tuned transformers model as a GGUF file for the llama.cpp backend (`mucode.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mucode.cli.console import console


def export_command(
    model: Annotated[Path, typer.Option(help="The fine-tuned model: a Hugging Face folder (config.json, "
                                             "safetensors) or a PEFT adapter folder, merged onto the template's "
                                             "weights.")],
    template: Annotated[str, typer.Option(help="The GGUF the base model was loaded from (a registry name or a "
                                               ".gguf file): its tokenizer, chat template and hyperparameters are "
                                               "copied.")],
    out: Annotated[Path, typer.Option(help="The .gguf file to write (atomically); the manifest goes to "
                                           "OUT.json.")],
    ftype: Annotated[str, typer.Option(help="f32, f16, bf16, or a llama.cpp quantisation type (q8_0, q4_0, "
                                            "q4_k_m, q5_k_m, ...), quantised from f16.")] = "f16",
) -> None:
    """Write the model as GGUF with the template's metadata; print the file, its size and digest."""
    from mucode.export import export_gguf, manifest_path  # torch and transformers: only when exporting

    manifest = export_gguf(model, template, out, ftype=ftype)
    table = Table(title="mucode export", title_justify="left", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in (("file", str(out)), ("ftype", manifest["ftype"]),
                         ("size", f"{manifest['size'] / 2**20:,.1f} MiB"), ("sha256", manifest["sha256"]),
                         ("architecture", f"{manifest['architecture']}, {manifest['tensors']} tensors"),
                         ("template", manifest["template"]), ("manifest", str(manifest_path(out)))):
        table.add_row(label, value)
    console.print(table)
