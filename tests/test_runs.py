"""mucode.runs: atomic writes, the append-only record file, pinning a run folder to its config, versions."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mucode import __version__
from mucode.errors import ConfigError, DataError
from mucode.runs import (
    RecordLog,
    changed_fields,
    check_identity,
    file_sha256,
    pin_run_dir,
    replacing,
    versions,
    write_atomic,
    write_json,
    write_jsonl,
)

# ------------------------------------------------------------------------------------------ atomic writes


def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    write_json(target, {"old": True})
    before = target.read_bytes()

    def crash(*args: object) -> None:
        raise KeyboardInterrupt  # like a kill between writing the bytes and renaming them into place

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json(target, {"new": True})
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]


def test_a_writer_that_fails_inside_replacing_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as temporary:
        temporary.write_bytes(b"half a mod")
        raise RuntimeError("the writer died")
    assert target.read_bytes() == b"old" and [path.name for path in tmp_path.iterdir()] == ["model.gguf"]
    with replacing(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new" and [path.name for path in tmp_path.iterdir()] == ["model.gguf"]


def test_writes_create_folders_and_use_the_one_json_layout(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "b.json", {"name": "μCode", "n": [1, 2]})
    expected = '{\n  "name": "μCode",\n  "n": [\n    1,\n    2\n  ]\n}\n'
    assert (tmp_path / "a" / "b.json").read_text(encoding="utf-8") == expected
    write_jsonl(tmp_path / "lines.jsonl", [{"a": 1}, {"b": "é"}])
    assert (tmp_path / "lines.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
    write_atomic(tmp_path / "raw", b"\x00\x01")
    assert (tmp_path / "raw").read_bytes() == b"\x00\x01"
    assert oct((tmp_path / "raw").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_an_unwritable_target_is_a_data_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"file/out.json: cannot write"):
        write_json(tmp_path / "file" / "out.json", {})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------- append-only records


def test_a_torn_last_line_is_ignored_on_read_and_overwritten_by_the_next_append(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "log.jsonl")
    log.append([{"a": 1}, {"a": 2}])
    with open(log.path, "ab") as stream:  # what a kill in the middle of an append leaves
        stream.write(b'{"a": 3, "b": "tor')
    assert log.load() == [{"a": 1}, {"a": 2}]
    log.append([{"a": 3}])
    assert log.path.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'
    assert log.lines() == [(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3})]


def test_a_bad_middle_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "log.jsonl")
    log.path.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(DataError, match=r"log\.jsonl:2: not a JSON record"):
        log.load()


def test_load_parses_each_record_with_its_place(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "log.jsonl")
    assert log.load() == [] and not log.path.exists()
    log.append([{"a": 1}, {"a": 2}])
    assert log.load(lambda record, where: (record["a"], where)) == [(1, f"{log.path}:1"), (2, f"{log.path}:2")]


# ---------------------------------------------------------------------------------- identity and pinning


def test_changed_fields_are_dotted_sorted_and_compare_as_json() -> None:
    old = {"sampling": {"temperature": 0.7, "stop": []}, "model": "m", "gone": 1}
    new = {"sampling": {"temperature": 0.9, "stop": ()}, "model": "m", "added": None}
    assert changed_fields(old, new) == ["gone", "sampling.temperature"]  # a None default is no change


def test_pinning_names_the_changed_fields_and_force_starts_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    identity = {"format": "x/1", "sampling": {"temperature": 0.7, "seed": 0}, "ids": ["a", "b"]}
    assert pin_run_dir(run, identity, outputs=["records.jsonl"]) == run
    assert json.loads((run / "config.json").read_text()) == identity
    (run / "records.jsonl").write_text("{}\n")
    pin_run_dir(run, identity, outputs=["records.jsonl"])  # the same config resumes
    assert (run / "records.jsonl").exists()
    changed = {**identity, "sampling": {"temperature": 0.9, "seed": 1}}
    with pytest.raises(ConfigError, match=r"run was started with another config \(sampling\.seed was 0, now 1; "
                                          r"sampling\.temperature was 0\.7, now 0\.9\); use --force"):
        pin_run_dir(run, changed, outputs=["records.jsonl"])
    pin_run_dir(run, changed, force=True, outputs=["records.jsonl"])
    assert not (run / "records.jsonl").exists()
    assert json.loads((run / "config.json").read_text())["sampling"]["seed"] == 1


def test_identity_messages_cap_long_values_and_many_fields() -> None:
    with pytest.raises(ConfigError) as error:
        check_identity("out", {f"f{i}": i for i in range(8)} | {"ids": list(range(100))},
                       {f"f{i}": i + 1 for i in range(8)} | {"ids": []}, holds="holds a model trained with",
                       remedy="use another --out")
    message = str(error.value)
    assert message.startswith("out holds a model trained with another config (f0 was 0, now 1; ")
    assert message.endswith("and 4 more); use another --out") and len(message) < 400


def test_a_run_folder_that_is_a_file_or_has_a_broken_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        pin_run_dir(tmp_path / "file", {})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{")
    with pytest.raises(DataError, match=r"run/config.json: cannot read the run's config"):
        pin_run_dir(tmp_path / "run", {})


# ------------------------------------------------------------------------------------------- provenance


def test_versions_and_sha256() -> None:
    found = versions("pytest", "surely-not-installed-package")
    assert list(found) == ["mucode", "python", "pytest", "surely-not-installed-package", "platform"]
    assert found["mucode"] == __version__ and found["pytest"] == pytest.__version__
    assert found["surely-not-installed-package"] is None
    assert set(versions()) == {"mucode", "python", "platform"}


def test_file_sha256_reads_in_blocks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    (tmp_path / "blob").write_bytes(data)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_runs_sits_at_the_bottom_of_the_package() -> None:
    """`mucode.runs` imports nothing of mucode but the errors and the version, so every layer may use it."""
    import ast

    import mucode.runs

    tree = ast.parse(Path(mucode.runs.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name for name in imported if name.startswith("mucode")} == {"mucode", "mucode.errors"}
