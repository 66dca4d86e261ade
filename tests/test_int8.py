"""mucode.int8: int8 linear layers (per-channel weights, per-token activations), fusion of sibling projections,
and the verifier's int8 scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from torch import nn  # noqa: E402

import mucode.search  # noqa: E402
from mucode.errors import ConfigError  # noqa: E402
from mucode.int8 import Int8Linear, Int8Product, quantize_linears  # noqa: E402
from mucode.verifier import Verifier, load_backbone  # noqa: E402
from mucode.verifier.model import save_verifier  # noqa: E402
from tests.test_verifier_model import CODES, PROMPT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def relative_errors(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    return (approx - exact).norm(dim=-1) / exact.norm(dim=-1)


def test_product_matches_the_float_layer_row_by_row_even_beside_an_outlier_token() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(20, 64)
    x[3] *= 500  # a "massive activation" token: with one scale per tensor it would flatten every other row
    product = Int8Product([linear])
    with torch.no_grad():
        exact, approx = linear(x), product(x)
    assert relative_errors(approx, exact).max() < 0.02
    assert torch.equal(product(x[5:6]), approx[5:6])  # a row's result does not depend on its batch
    assert product(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_sibling_projections_share_one_product_and_get_their_own_outputs(tiny_qwen2: Path) -> None:
    model, _, _ = load_backbone(str(tiny_qwen2), seed=1)
    reference = [layer.self_attn.k_proj for layer in model.model.layers]
    ids = torch.tensor([[5, 17, 99, 3, 250, 7, 8, 1000]])
    with torch.no_grad():
        keys = [layer(model.model.embed_tokens(ids)) for layer in reference]
        exact = model(input_ids=ids).logits
    assert quantize_linears(model) == 6 * len(model.model.layers)  # q, k, v, o, gate, up per layer
    assert isinstance(model.score, nn.Linear) and isinstance(model.model.layers[0].mlp.down_proj, nn.Linear)
    assert isinstance(model.model.layers[0].mlp.up_proj, Int8Linear)
    calls = []
    for module in model.modules():
        if isinstance(module, Int8Product):
            module.register_forward_hook(lambda module, args, out: calls.append(module))
    with torch.no_grad():
        approx = model(input_ids=ids).logits
        k_proj = model.model.layers[0].self_attn.k_proj
        assert relative_errors(k_proj(model.model.embed_tokens(ids)), keys[0]).max() < 0.02
    assert len(calls) == 3 * len(model.model.layers) + 1  # qkv, o, gate+up; then k alone
    assert (approx - exact).abs().max() < 0.05 * exact.abs().max()


def test_verifier_scores_in_int8_on_cpu_only(tiny_qwen2: Path, tmp_path: Path) -> None:
    model, tokenizer, _ = load_backbone(str(tiny_qwen2), seed=1)
    save_verifier(model, tokenizer, tmp_path / "v", {"template": "paper", "loss": "bt"})
    items = [(PROMPT, code) for code in CODES]
    exact = torch.tensor(Verifier.load(tmp_path / "v", dtype="fp32").score_texts(items))
    verifier = mucode.search.load_scorer(tmp_path / "v", "int8")  # what --verifier DIR --verifier-dtype int8 does
    assert isinstance(verifier, Verifier) and verifier.int8
    approx = torch.tensor(verifier.score_texts(items))
    assert (approx - exact).abs().max() < 0.1 * (exact.max() - exact.min())
    assert approx.argsort().tolist() == exact.argsort().tolist()
    with pytest.raises(ConfigError, match="int8 runs on CPU only"):
        Verifier.load(tmp_path / "v", dtype="int8", device="cuda")


def test_models_off_the_cpu_are_refused() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ConfigError, match="int8 inference is for CPU models"):
        quantize_linears(model)
