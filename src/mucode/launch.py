"""The processes a job runs in: one, or several started by ``accelerate launch`` / ``torchrun``.

The fine-tuning jobs (`mucode.finetune`) train in every process (DDP); everything else (rollouts, searches, the
pipeline's own files) runs in the main process while the others wait. Kept apart from `mucode.finetune` so
that the pipeline and the CLI can ask which process they are in without importing torch.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def main_process() -> bool:
    """Whether this is the main process of a launch (or the only process): the one that prints results.
    Read from the launcher's environment, so it costs nothing and joins no process group."""
    return os.environ.get("RANK", "0") == "0"


class Launch:
    """The processes a job runs in: one, or several started by ``accelerate launch`` / ``torchrun`` (DDP; the
    Trainer shards the data, averages the gradients and saves checkpoints from the main process only).

    Files outside the Trainer's checkpoints (the run's identity, the finished artefact) are written by the main
    process alone: `main_first` runs a block there first and then in the others, `wait` is a barrier.
    """

    def __init__(self) -> None:
        self.processes = int(os.environ.get("WORLD_SIZE", "1"))
        if self.processes > 1:
            from accelerate import PartialState

            self._state: Any = PartialState()  # joins the process group the launcher set up
        else:
            self._state = None

    @property
    def main(self) -> bool:
        return self._state is None or self._state.is_main_process

    def main_first(self) -> AbstractContextManager[Any]:
        return self._state.main_process_first() if self._state else nullcontext()

    def wait(self) -> None:
        if self._state:
            self._state.wait_for_everyone()
