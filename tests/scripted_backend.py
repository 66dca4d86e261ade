"""A scripted generation backend and tiny problems for rollout, search and solve tests (no model needed).

Replies are chosen per (task, turn) from canned lists, indexed by the conversation's seed and the sample
index, so a reply depends only on what a real backend's would: the conversation, the seed and j.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mucode.backends import Backend, Completion, Conversation, GenerationStats, Request, SamplingParams
from mucode.types import Problem

PROBLEMS = [
    Problem(task_id="inc", prompt="Write a function inc(x) that adds one.", entry_point="inc",
            public_tests=("assert inc(1) == 2",), private_tests=("assert inc(-1) == 0",)),
    Problem(task_id="neg", prompt="Write a function neg(x) that negates x.", entry_point="neg",
            public_tests=("assert neg(1) == -1",), private_tests=("assert neg(0) == 0", "assert neg(-2) == 2")),
    Problem(task_id="half", prompt="Write a function half(x) that halves x.", entry_point="half",
            public_tests=("assert half(4) == 2",), private_tests=("assert half(3) == 1.5",)),
]


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}\n```\n"


RIGHT = {"inc": fenced("def inc(x):\n    return x + 1"), "neg": fenced("def neg(x):\n    return -x"),
         "half": fenced("def half(x):\n    return x / 2")}
WRONG = {"inc": fenced("def inc(x):\n    return x"), "neg": fenced("def neg(x):\n    return x"),
         "half": fenced("def half(x):\n    return x")}
#: Passes the public test, fails a private one.
TRAP = {"inc": fenced("def inc(x):\n    return abs(x) + 1"), "neg": fenced("def neg(x):\n    return -abs(x)"),
        "half": fenced("def half(x):\n    return x // 2")}

Script = Mapping[tuple[str, int], Sequence[str]]


def task_of(conversation: Conversation, problems: Sequence[Problem] = PROBLEMS) -> str:
    first = conversation[0]["content"]
    return next(problem.task_id for problem in problems if problem.prompt in first)


def turn_of(conversation: Conversation) -> int:
    return 1 + sum(message["role"] == "assistant" for message in conversation)


@dataclass
class ScriptedBackend(Backend):
    """``script[(task, turn)]`` lists the possible replies; reply j of a conversation seeded s is entry
    ``(s + j) % len``. A missing key answers with prose (no code). Records every call."""

    script: Script = field(default_factory=dict)
    sleep: float = 0.0
    calls: list[tuple[int, SamplingParams, list[int] | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = "scripted"
        self.model_id = f"scripted:{self.model}"

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        return self._generate(conversations, params, seeds)

    def _generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                  seeds: Sequence[int] | None) -> list[list[Completion]]:
        self.calls.append((len(conversations), params, list(seeds) if seeds is not None else None))
        time.sleep(self.sleep)
        out = []
        for index, conversation in enumerate(conversations):
            seed = seeds[index] if seeds is not None else (params.seed or 0) + index
            options = self.script.get((task_of(conversation), turn_of(conversation)), ["I cannot do that."])
            out.append([Completion(options[(seed + j) % len(options)], 50, 10 + j, seconds=0.5)
                        for j in range(params.n)])
        self.last_stats = GenerationStats(50 * len(conversations), sum(c.completion_tokens for cs in out for c in cs),
                                          0.5)
        return out


@dataclass
class PositionalBackend(ScriptedBackend):
    """The base interface only: one seed per call, completion i seeded by its position (as real backends)."""

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        return self._generate(conversations, params, None)


@dataclass
class ContinuousScriptedBackend(ScriptedBackend):
    """The same replies through the request-level interface of a continuous-batching engine: a request of
    seed s takes ``1 + s % 4`` steps, every step advances all running requests, new ones join at once.

    ``log`` records ("submit", task, turn) and ("done", task, turn) in order, for interleaving checks;
    ``on_step`` (if set) is called at every step.
    """

    log: list[tuple[str, str, int]] = field(default_factory=list)
    on_step: object = None
    continuous = True
    _running: dict = field(default_factory=dict)

    def submit(self, request: Request) -> int:
        ticket = next(self._tickets)
        conversation = request.conversation
        self.log.append(("submit", task_of(conversation), turn_of(conversation)))
        self._running[ticket] = [request, 1 + request.seed % 4]
        return ticket

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def step(self) -> list[tuple[int, list[Completion]]]:
        if callable(self.on_step):
            self.on_step()
        time.sleep(self.sleep)
        finished = []
        for ticket, entry in list(self._running.items()):
            entry[1] -= 1
            if entry[1] == 0:
                request = entry[0]
                del self._running[ticket]
                self.log.append(("done", task_of(request.conversation), turn_of(request.conversation)))
                (completions,) = self._generate([request.conversation], request.params, [request.seed])
                finished.append((ticket, completions))
        return finished
