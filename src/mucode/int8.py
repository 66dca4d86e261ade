"""Int8 inference for the linear layers of a transformers decoder on CPU (W8A8: int8 weights and activations).

Why: verifier scoring is compute-bound on a CPU (docs/verifier.md): ~85% of its time is matrix products, and an
int8 product (``torch._int_mm``, VNNI) runs about twice as fast as bf16 on the same cores.

How, and why this way:
- weights are quantised once, symmetrically, with one scale per output channel;
- activations are quantised on the fly with one scale per *token* (row). Qwen's activations carry outliers
  hundreds of times larger than the rest on a few tokens (the "massive activations" of the first token and
  the delimiters). One scale per tensor lets those tokens flatten every other token to zero, and it reordered
  candidates when tried (Spearman 0.2–0.5 against fp32). Per token, an outlier token costs only its own
  precision, and the result of a row never depends on the other rows of the batch (the int32 sums are exact),
  so a candidate's score does not depend on what it was batched with;
- linear layers that read the same input (attention's q/k/v, the MLP's gate/up) are fused into one product,
  so their shared input is quantised once and the product is wider. The fused module computes all outputs
  on the first member's call and hands the others theirs when they are called with the same tensor.
- the MLP's down projection stays in the model's float dtype, as does everything that is not a linear layer
  (attention itself, norms, the scalar head). The input of ``down_proj`` is where Qwen's massive activations
  live: hundreds of channels over 6 on some tokens, which per-token int8 cannot resolve. Measured on the
  held-out rollouts of results/verifier/ (a trained BT verifier, the 0.5B backbone, the 10 problems with the
  most codes; per-problem Spearman correlation of the scores with fp32's): bf16 0.99; int8 with ``down_proj``
  in bf16 0.96; all int8 0.81. Smoothing ``down_proj``'s input into ``up_proj`` (SmoothQuant, calibrated on one
  input) reached 0.91-0.93, and splitting out its 16-48 largest input channels (LLM.int8, static) 0.90-0.91.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mucode.errors import ConfigError

#: Sibling projections that read the same input in Llama/Qwen2/Mistral-style decoders; fused when all exist.
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
#: Layers that stay in float: the verifier's scalar head, the LM head, and the MLP's down projection (see above).
KEEP_FLOAT = ("score", "lm_head", "down_proj")
INT8_MAX = 127


class Int8Product(nn.Module):
    """The int8 product of one or more linear layers over one input, their outputs concatenated."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        weight = torch.cat([linear.weight.detach().float() for linear in linears])
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
        self.register_buffer("qweight", (weight / scale[:, None]).round().to(torch.int8))
        self.register_buffer("scale", scale)
        has_bias = any(linear.bias is not None for linear in linears)
        bias = [linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
                for linear in linears]
        self.register_buffer("bias", torch.cat(bias) if has_bias else None)
        self.sizes = [linear.out_features for linear in linears]
        self._input: torch.Tensor | None = None
        self._pending: list[torch.Tensor | None] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All outputs for ``x``, concatenated on the last dimension, in ``x``'s dtype."""
        rows = x.reshape(-1, x.shape[-1])
        scale = rows.abs().amax(dim=1, keepdim=True).float().clamp_(min=torch.finfo(torch.float32).tiny) / INT8_MAX
        quantised = (rows / scale).round_().to(torch.int8)
        out = torch._int_mm(quantised, self.qweight.t()).float().mul_(scale).mul_(self.scale)
        if self.bias is not None:
            out += self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], out.shape[-1])

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Member ``index``'s output for ``x``; the product runs once for all members called with ``x``."""
        if self._input is not x or self._pending[index] is None:
            self._input = x
            self._pending = list(self(x).split(self.sizes, dim=-1))
        out, self._pending[index] = self._pending[index], None
        if all(pending is None for pending in self._pending):
            self._input, self._pending = None, []
        return out


class Int8Linear(nn.Module):
    """Stands where an ``nn.Linear`` was: its output is member ``index`` of a shared `Int8Product`."""

    def __init__(self, product: Int8Product, index: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self._product = (product,)  # a tuple, so the shared product is not registered once per member
        self.index, self.in_features, self.out_features = index, in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._product[0].output(self.index, x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears(model: nn.Module) -> int:
    """Replace the model's linear layers (all but `KEEP_FLOAT`) by int8 ones, in place; return how many.

    For inference only (no gradients flow through int8 products) and on CPU: ``torch._int_mm`` is what makes
    it fast there. Rows of any count work; the saved model on disk is untouched.
    """
    if any(parameter.device.type != "cpu" for parameter in model.parameters()):
        raise ConfigError("int8 inference is for CPU models; on a GPU use bf16")
    replaced = 0
    for module in list(model.modules()):
        for names in FUSED:
            linears = [getattr(module, name, None) for name in names]
            if all(isinstance(linear, nn.Linear) for linear in linears):
                replaced += _replace(module, names, linears)
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name not in KEEP_FLOAT:
                replaced += _replace(module, [name], [child])
    return replaced


def _replace(module: nn.Module, names: Sequence[str], linears: Sequence[nn.Linear]) -> int:
    product = Int8Product(linears)
    module.add_module(f"int8_{'_'.join(names)}", product)
    for index, (name, linear) in enumerate(zip(names, linears, strict=True)):
        setattr(module, name, Int8Linear(product, index, linear.in_features, linear.out_features))
    return len(names)
