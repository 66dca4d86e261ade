"""The paper's settings that several configs share, declared once (docs/method.md, the hyper-parameter table).

An episode, a rollout run, a search and the sampler all take a turn limit and sampling settings; both
fine-tuning jobs take LoRA settings. Each config declares its field with the value from here, and the CLI and
the pipeline's experiment files read the configs' defaults, so changing a default is a one-line change.
"""

from __future__ import annotations

#: Turns per episode (T): 3 for training rollouts and for the headline evaluations.
TURNS = 3
#: Sampling temperature of rollouts and of Best-of-N candidates.
TEMPERATURE = 0.7
#: Nucleus sampling mass (1.0: off).
TOP_P = 1.0
#: Tokens per reply.
MAX_TOKENS = 1000
#: LoRA rank, alpha and dropout when a job trains adapters instead of every weight (not in the paper, which
#: fine-tunes fully; the usual values for models of this size).
LORA_RANK = 16
LORA_ALPHA = 32
LORA_DROPOUT = 0.0
