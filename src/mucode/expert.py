"""The expert (docs/method.md §5): turn rollout trajectories into supervised (state → reply) examples.

μCode's expert is a one-step local search. Any state of an episode can be "recovered" in one step, so the best
reply to every visited state is simply the best code ever sampled for the problem: y* = argmax over the
problem's candidate codes of β_O·oracle + β_L·verifier (Eq. 4). The paper relabels *every* visited state with
y* (Eq. 5, ``relabel="all"``, the default). The released code keeps each successful trajectory's own final reply
and relabels only failed trajectories (``relabel="failed"``), and only the three the verifier likes best
(``relabel="top-scored"``). The baselines are other ways of choosing (state, target) pairs from the same
records, so they live here too and the training stage does not care which one produced its data.

Records are the trajectories of `mucode rollout` (`mucode.records.Trajectory`): ``messages`` (the conversation,
first message = the problem prompt, then reply / feedback pairs), ``turns`` (each with its ``reply``, ``code``
and oracle verdicts) and ``success``. State s_t (1-based) is ``messages[:2t-1]``: the prompt and the first t-1
reply/feedback pairs; the reply taken in it is ``messages[2t-1]``.

μCode_LV (β_O = 0) never reads an oracle label: its targets, and which states it relabels, depend on the
verifier alone (``target_passed`` is still filled in, as a statistic for logs, and SFT ignores it). That is
why it only takes ``relabel="all"``: telling failed trajectories apart needs the oracle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from mucode.env import Turn
from mucode.errors import ConfigError, DataError
from mucode.records import Trajectory
from mucode.rollout import group_by_task

Method = Literal["mucode", "mucode-ov", "mucode-lv", "rft-single", "rft-multi", "rft-multi-hindsight", "rft-lv"]
METHODS: tuple[str, ...] = get_args(Method)
#: (β_O, β_L) of the relabelling methods (docs/method.md §5 and the paper's Table 2).
BETAS: dict[str, tuple[float, float]] = {"mucode": (1.0, 0.1), "mucode-ov": (1.0, 0.0), "mucode-lv": (0.0, 1.0)}
#: Methods that need verifier scores for every candidate code.
SCORED_METHODS = frozenset({"mucode", "mucode-lv", "rft-lv"})

Relabel = Literal["all", "failed", "top-scored"]
RELABELS: tuple[str, ...] = get_args(Relabel)
#: Verifier scores by (task id, code).
Scores = Mapping[tuple[str, str], float]


@dataclass(frozen=True)
class ExpertConfig:
    """How training examples are chosen. ``method`` picks the algorithm; the rest tune it.

    ``beta_oracle``/``beta_verifier`` default to the method's (μCode: 1.0 and 0.1); only ``mucode`` takes both,
    the ablations fix one of them at 0 and the RFT baselines use neither, so setting one there is an error.
    ``candidates``: ``all`` codes of the problem (paper) or the ``final`` code of each trajectory (reference).
    ``relabel``: which states get y*: ``all`` visited states (paper, Eq. 5), the states of ``failed``
    trajectories (successes keep their own final reply, as the released code does), or those of the
    ``top-scored`` ``relabel_count`` failed trajectories (the released code exactly, 3). ``top_k``:
    trajectories kept per problem by ``rft-lv``.
    """

    method: Method = "mucode"
    beta_oracle: float | None = None
    beta_verifier: float | None = None
    candidates: Literal["all", "final"] = "all"
    relabel: Relabel = "all"
    relabel_count: int = 3
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"expert.method: unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.candidates not in ("all", "final"):
            raise ConfigError(f"expert.candidates: {self.candidates!r} is not 'all' or 'final'")
        if self.relabel not in RELABELS:
            raise ConfigError(f"expert.relabel: {self.relabel!r} is not one of: {', '.join(RELABELS)}")
        self._check_betas()
        if self.method == "mucode-lv" and self.relabel != "all":
            raise ConfigError(f"expert.relabel: mucode-lv relabels every state; {self.relabel!r} would need the "
                              "oracle to find the failed trajectories")
        for name in ("relabel_count", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"expert.{name} must be at least 1, got {getattr(self, name)}")

    def _check_betas(self) -> None:
        """An explicit β the method would ignore or contradict is an error, not a silent no-op."""
        fixed = {"mucode-ov": ("beta_verifier",), "mucode-lv": ("beta_oracle",)}.get(self.method)
        if fixed is None and self.method not in BETAS:
            fixed = ("beta_oracle", "beta_verifier")
        for name in fixed or ():
            value = getattr(self, name)
            if value is not None and (value != 0 or self.method not in BETAS):
                raise ConfigError(f"expert.{name}: method {self.method} does not take it (got {value}); "
                                  + ("use method = \"mucode\" to weigh both" if self.method in BETAS
                                     else "only the μCode methods relabel by score"))
        for name in ("beta_oracle", "beta_verifier"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"expert.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def betas(self) -> tuple[float, float]:
        """(β_O, β_L): the explicit values, else the method's, else (1.0, 0.1)."""
        default_oracle, default_verifier = BETAS.get(self.method, BETAS["mucode"])
        return (default_oracle if self.beta_oracle is None else self.beta_oracle,
                default_verifier if self.beta_verifier is None else self.beta_verifier)

    @property
    def needs_scores(self) -> bool:
        return self.method in SCORED_METHODS and (self.method == "rft-lv" or self.betas[1] != 0)


@dataclass(frozen=True)
class Candidate:
    """A code sampled for a problem, the reply that carried it, and how good it is."""

    task_id: str
    code: str
    reply: str
    passed: bool
    score: float | None = None


@dataclass(frozen=True)
class SFTExample:
    """One supervised example: the conversation so far (ending with a user message) and the reply to learn.

    ``kind`` says where the target came from: ``relabelled`` (the expert's y*) or ``own`` (the trajectory's
    own reply). ``target_passed`` is the oracle label of the target's code (for statistics; SFT ignores it).
    """

    task_id: str
    messages: tuple[dict[str, str], ...]
    target: str
    kind: Literal["relabelled", "own"]
    target_code: str
    target_passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "messages": [dict(message) for message in self.messages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SFTExample:
        return cls(task_id=data["task_id"], messages=tuple(dict(m) for m in data["messages"]), target=data["target"],
                   kind=data["kind"], target_code=data["target_code"], target_passed=data["target_passed"])

    @property
    def key(self) -> str:
        """A content digest: equal examples (same state, same target) have equal keys."""
        text = repr((self.task_id, [sorted(m.items()) for m in self.messages], self.target))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_examples(records: Sequence[Trajectory], config: ExpertConfig,
                   scores: Scores | None = None) -> list[SFTExample]:
    """The training examples ``config.method`` makes from trajectory ``records`` (all iterations' records,
    for data aggregation), problems in order of first appearance, trajectories in record order."""
    if config.needs_scores and scores is None:
        raise ConfigError(f"expert method {config.method} needs verifier scores (train a verifier first, or use "
                          "mucode-ov / rft-multi)")
    builder = _BUILDERS[config.method]
    examples: list[SFTExample] = []
    for task_id, group in group_by_task(records).items():
        examples.extend(builder(task_id, group, config, scores))
    return examples


def candidate_codes(records: Iterable[Trajectory], which: str = "all") -> dict[str, list[str]]:
    """The distinct codes to score per task (what the verifier must rate before relabelling)."""
    codes: dict[str, list[str]] = {}
    for task_id, group in group_by_task(records).items():
        codes[task_id] = list(dict.fromkeys(c.code for c in _candidates(task_id, group, which, None)))
    return codes


def summarize_examples(examples: Sequence[SFTExample]) -> dict[str, Any]:
    """Counts for logs and manifests: examples, tasks, how many relabelled, how many targets are correct."""
    return {"examples": len(examples), "tasks": len({e.task_id for e in examples}),
            "relabelled": sum(e.kind == "relabelled" for e in examples),
            "own": sum(e.kind == "own" for e in examples),
            "correct_targets": sum(e.target_passed for e in examples)}


# ------------------------------------------------------------------------------------------- methods


def _mucode(task_id: str, group: list[Trajectory], config: ExpertConfig,
            scores: Scores | None) -> list[SFTExample]:
    """y* at every state chosen by ``config.relabel``; successful trajectories outside it keep their reply."""
    candidates = _candidates(task_id, group, config.candidates, scores)
    if not candidates:
        return []
    beta_oracle, beta_verifier = config.betas
    best = pick_target(candidates, beta_oracle, beta_verifier)
    if beta_verifier == 0 and not best.passed:
        return []  # oracle only and no correct code: y* would be an arbitrary wrong code
    relabelled = _relabelled(task_id, group, config, scores)
    examples = []
    for record in group:
        if any(record is chosen for chosen in relabelled):
            examples.extend(_example(task_id, state, best.reply, "relabelled", best.code, best.passed)
                            for state in _states(record))
        elif record.success:
            examples.extend(_own_final_reply(task_id, record))
    return examples


def _relabelled(task_id: str, group: list[Trajectory], config: ExpertConfig,
                scores: Scores | None) -> list[Trajectory]:
    """The trajectories whose states get y*. ``all`` reads no oracle label (μCode_LV depends on that)."""
    if config.relabel == "all":
        return list(group)
    failed = [record for record in group if not record.success]
    if config.relabel == "top-scored":
        failed = sorted(failed, key=lambda r: -_final_score(task_id, r, scores))[:config.relabel_count]
    return failed


def _rft_single(task_id: str, group: list[Trajectory], config: ExpertConfig,
                scores: Scores | None) -> list[SFTExample]:
    """Rejection fine-tuning on correct first-turn replies (the single-turn baseline)."""
    examples = []
    for record in group:
        first = record.turns[0]
        if first.passed:
            examples.append(_example(task_id, _states(record)[0], first.reply, "own", first.code, True))
    return examples


def _rft_multi(task_id: str, group: list[Trajectory], config: ExpertConfig,
               scores: Scores | None) -> list[SFTExample]:
    """The paper's multi-turn RFT: every state of a successful trajectory → the reply it actually took there,
    incorrect intermediate replies included."""
    return [_example(task_id, state, turn.reply, "own", turn.code, turn.passed)
            for record in group if record.success
            for state, turn in zip(_states(record), record.turns, strict=True)]


def _rft_multi_hindsight(task_id: str, group: list[Trajectory], config: ExpertConfig,
                         scores: Scores | None) -> list[SFTExample]:
    """The reference code's multi-turn RFT: every state of a successful trajectory → its final correct reply."""
    return [example for record in group if record.success for example in _own_final_reply(task_id, record)]


def _own_final_reply(task_id: str, record: Trajectory) -> list[SFTExample]:
    """Every state of a successful trajectory paired with the trajectory's own final (correct) reply."""
    final = _final_turn(record)
    return [_example(task_id, state, final.reply, "own", final.code, True) for state in _states(record)]


def _rft_lv(task_id: str, group: list[Trajectory], config: ExpertConfig,
            scores: Scores | None) -> list[SFTExample]:
    """RFT_LV (Table 2): the ``top_k`` trajectories by the verifier's score of their final code, unrelabelled."""
    ranked = sorted(group, key=lambda r: -_final_score(task_id, r, scores))[:config.top_k]
    return [_example(task_id, state, turn.reply, "own", turn.code, turn.passed)
            for record in ranked for state, turn in zip(_states(record), record.turns, strict=True)]


_BUILDERS = {"mucode": _mucode, "mucode-ov": _mucode, "mucode-lv": _mucode, "rft-single": _rft_single,
             "rft-multi": _rft_multi, "rft-multi-hindsight": _rft_multi_hindsight, "rft-lv": _rft_lv}


# ------------------------------------------------------------------------------------------- pieces


def pick_target(candidates: Sequence[Candidate], beta_oracle: float, beta_verifier: float) -> Candidate:
    """y* = argmax of β_O·passed + β_L·score; the first candidate wins ties (record order: deterministic)."""
    if not candidates:
        raise ValueError("no candidates to pick from")

    def value(candidate: Candidate) -> float:  # a zero β never reads its signal
        oracle = beta_oracle * candidate.passed if beta_oracle else 0.0
        verifier = beta_verifier * (candidate.score or 0.0) if beta_verifier else 0.0
        return oracle + verifier

    return max(candidates, key=value)  # max keeps the first of equal values


def _candidates(task_id: str, group: Sequence[Trajectory], which: str,
                scores: Scores | None) -> list[Candidate]:
    """The problem's codes with their replies, labels and scores; turns without code are not candidates."""
    turns = [turn for record in group for turn in (record.turns if which == "all" else [_final_turn(record)])]
    return [Candidate(task_id, turn.code, turn.reply, turn.passed, _score(task_id, turn.code, scores))
            for turn in turns if turn.code]


def _states(record: Trajectory) -> list[tuple[dict[str, str], ...]]:
    """s_1 … s_T of a trajectory: the prompt, then each further reply/feedback pair appended."""
    messages, turns = record.messages, record.turns
    if len(messages) < 2 * len(turns) or any(messages[2 * t]["role"] != "user" for t in range(len(turns))):
        raise DataError(f"trajectory {record.task_id}/{record.rollout}: messages do not alternate "
                        "user/assistant over its turns")
    return [tuple(dict(message) for message in messages[:2 * t + 1]) for t in range(len(turns))]


def _example(task_id: str, state: tuple[dict[str, str], ...], target: str, kind: Literal["relabelled", "own"],
             code: str, passed: bool) -> SFTExample:
    return SFTExample(task_id, state, target, kind, code, passed)


def _final_turn(record: Trajectory) -> Turn:
    if not record.turns:
        raise DataError(f"trajectory {record.task_id}/{record.rollout} has no turns")
    return record.turns[-1]


def _final_score(task_id: str, record: Trajectory, scores: Scores | None) -> float:
    code = _final_turn(record).code or ""
    return (_score(task_id, code, scores) or 0.0) if code else float("-inf")


def _score(task_id: str, code: str, scores: Scores | None) -> float | None:
    if scores is None:
        return None
    try:
        return scores[task_id, code]
    except KeyError:
        raise DataError(f"no verifier score for a code of task {task_id} (score the same records that are "
                        "relabelled)") from None
