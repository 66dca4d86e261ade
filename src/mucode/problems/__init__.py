"""Benchmark loaders: MBPP, MBPP+, HumanEval+, custom JSONL files -> `mucode.types.Problem`.

Loaders only read and map data; nothing here executes code. Plain HumanEval lives in
`mucode.problems.humaneval` and is reached through `load_problems("humaneval")`.
"""

from mucode.problems.custom import load_custom, write_custom
from mucode.problems.datadir import BUNDLED_DIR, DATA_DIR_ENV, find_data_dir, resolve_data_file
from mucode.problems.evalplus import load_humaneval_plus, load_mbpp_plus
from mucode.problems.fetch import RELEASES, fetch_release
from mucode.problems.mbpp import MBPP_KNOWN_BAD, MBPP_POLICIES, MBPP_SPLITS, load_mbpp
from mucode.problems.registry import DATASETS, dataset_fingerprint, dataset_source, load_problems, normalize_task_id

__all__ = [
    "BUNDLED_DIR",
    "DATASETS",
    "DATA_DIR_ENV",
    "MBPP_KNOWN_BAD",
    "MBPP_POLICIES",
    "MBPP_SPLITS",
    "RELEASES",
    "dataset_fingerprint",
    "dataset_source",
    "fetch_release",
    "find_data_dir",
    "load_custom",
    "load_humaneval_plus",
    "load_mbpp",
    "load_mbpp_plus",
    "load_problems",
    "normalize_task_id",
    "resolve_data_file",
    "write_custom",
]
