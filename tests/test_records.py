"""mucode.records: typed trajectory and search records round-trip the JSON lines written today, byte for byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mucode.env import EpisodeConfig, Turn
from mucode.errors import DataError
from mucode.records import SearchRecord, Trajectory, read_searches, read_trajectories

ROOT = Path(__file__).resolve().parents[1]
#: Committed rollouts of the verifier experiment (results/verifier/README.md): gzipped trajectories.jsonl.
ROLLOUTS = sorted((ROOT / "results" / "verifier").glob("rollouts-*/trajectories.jsonl.gz"))
#: Committed searches of the quickstart's evaluations (results.json keeps every search record).
EVALS = sorted((ROOT / "results").glob("*/evals/*/*/results.json"))


def committed_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [line.rstrip("\n") for line in lines if line.strip()]


def test_there_are_committed_records_to_check() -> None:
    assert ROLLOUTS and EVALS


@pytest.mark.parametrize("path", ROLLOUTS, ids=lambda path: path.parent.name)
def test_committed_trajectories_round_trip_byte_for_byte(path: Path) -> None:
    for number, line in enumerate(committed_lines(path), start=1):
        trajectory = Trajectory.from_dict(json.loads(line), f"{path}:{number}")
        assert json.dumps(trajectory.to_dict(), ensure_ascii=False) == line
        assert isinstance(trajectory.config, EpisodeConfig) and all(isinstance(t, Turn) for t in trajectory.turns)
        assert len(trajectory.generation) == len(trajectory.turns)
        assert trajectory.prompt == trajectory.messages[0]["content"]
        assert trajectory.success == trajectory.turns[-1].passed


@pytest.mark.parametrize("path", EVALS, ids=lambda path: path.parent.parent.name)
def test_committed_search_records_round_trip(path: Path) -> None:
    searches = json.loads(path.read_text(encoding="utf-8"))["searches"]
    assert searches
    for data in searches:
        record = SearchRecord.from_dict(data, str(path))
        assert record.to_dict() == data
        assert json.dumps(record.to_dict(), ensure_ascii=False) == json.dumps(data, ensure_ascii=False)
        assert record.turns_used == len(record.turns) and record.final_code == record.turns[-1].chosen.code


def test_the_readers_parse_a_record_file_and_ignore_a_torn_last_line(tmp_path: Path) -> None:
    lines = committed_lines(ROLLOUTS[0])[:3]
    file = tmp_path / "trajectories.jsonl"
    file.write_text("\n".join(lines) + "\n" + lines[3 if len(lines) > 3 else 0][:50], encoding="utf-8")
    assert [t.to_dict() for t in read_trajectories(file)] == [json.loads(line) for line in lines]
    searches = json.loads(EVALS[0].read_text(encoding="utf-8"))["searches"][:2]
    (tmp_path / "searches.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in searches))
    assert [s.to_dict() for s in read_searches(tmp_path / "searches.jsonl")] == searches


def test_malformed_lines_are_data_errors_naming_file_and_line(tmp_path: Path) -> None:
    good = json.loads(committed_lines(ROLLOUTS[0])[0])
    file = tmp_path / "trajectories.jsonl"
    cases = [
        ({key: value for key, value in good.items() if key != "generation"}, r"missing generation"),
        ({**good, "surprise": 1}, r"unknown surprise"),
        ({**good, "turns": [{**good["turns"][0], "public": [{"status": "exploded"}]}]}, r"ValueError"),
        ({**good, "generation": [{"seed": 1}]}, r"generation: not a Generation record \(missing prompt_tokens"),
        ([1, 2], r"not a Trajectory record \(a JSON list"),
    ]
    for record, message in cases:
        file.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
        with pytest.raises(DataError, match=rf"trajectories\.jsonl:2: .*{message}"):
            read_trajectories(file)
    search = json.loads(EVALS[0].read_text(encoding="utf-8"))["searches"][0]
    broken = {**search, "turns": [{**search["turns"][0], "candidates": [{"task_id": "x"}]}]}
    (tmp_path / "searches.jsonl").write_text(json.dumps(broken) + "\n")
    with pytest.raises(DataError, match=r"searches\.jsonl:1: candidate: not a SearchCandidate record \(missing reply"):
        read_searches(tmp_path / "searches.jsonl")
