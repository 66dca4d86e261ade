"""--backend auto: the faster measured engine wins, the choice is cached per machine and model, folders go to hf,
a lone engine needs no probe, and the pipeline resolves auto once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mucode.backends import auto
from mucode.errors import ConfigError


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(64))  # the magic is all resolve_model reads
    return path


def fake_probe(rates: dict[str, float], calls: list[str]):
    def probe(backend: str, model: str) -> float:
        calls.append(backend)
        return rates[backend]
    return probe


def test_the_faster_engine_is_chosen_and_cached(gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "installed_candidates", lambda: ["openvino", "llamacpp"])
    calls: list[str] = []
    announced: list[str] = []
    choice = auto.choose_backend(str(gguf), home=tmp_path, probe=fake_probe({"openvino": 90, "llamacpp": 120}, calls),
                                 announce=announced.append)
    assert choice.backend == "llamacpp" and choice.measured == {"openvino": 90, "llamacpp": 120}
    assert "llamacpp 120 tok/s" in choice.reason and announced and sorted(calls) == ["llamacpp", "openvino"]
    again = auto.choose_backend(str(gguf), home=tmp_path, probe=fake_probe({}, calls))
    assert again == choice and len(calls) == 2  # cached: no second probe
    assert auto.cached_choices(tmp_path) == [choice]
    entry = next(iter(json.loads((tmp_path / auto.CACHE_FILE).read_text())))
    assert auto.machine_fingerprint() in entry and "tiny" in entry


def test_another_machine_probes_again(gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "installed_candidates", lambda: ["openvino", "llamacpp"])
    calls: list[str] = []
    auto.choose_backend(str(gguf), home=tmp_path, probe=fake_probe({"openvino": 200, "llamacpp": 60}, calls))
    monkeypatch.setattr(auto, "machine_fingerprint", lambda: "another CPU; 64 cores; amx_int8")
    choice = auto.choose_backend(str(gguf), home=tmp_path, probe=fake_probe({"openvino": 100, "llamacpp": 300}, calls))
    assert choice.backend == "llamacpp" and len(calls) == 4


def test_one_engine_or_a_folder_needs_no_probe(gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(backend: str, model: str) -> float:
        raise AssertionError("probed")

    monkeypatch.setattr(auto, "installed_candidates", lambda: ["llamacpp"])
    assert auto.choose_backend(str(gguf), home=tmp_path, probe=no_probe).backend == "llamacpp"
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert auto.choose_backend(str(folder), home=tmp_path, probe=no_probe).backend == "hf"
    monkeypatch.setattr(auto, "installed_candidates", lambda: [])
    with pytest.raises(ConfigError, match="no CPU engine"):
        auto.choose_backend(str(gguf), home=tmp_path, probe=no_probe)
    assert not (tmp_path / auto.CACHE_FILE).exists()


def test_the_installed_engines_are_found() -> None:
    pytest.importorskip("openvino_genai")
    pytest.importorskip("llama_cpp")
    assert auto.installed_candidates() == ["openvino", "llamacpp"]
