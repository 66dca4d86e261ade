"""Head-only verifier training: the backbone stays frozen and only the scalar head is fitted (a linear probe).

Why: fine-tuning needs a forward and a backward pass over every training input in every epoch; on a 2-core CPU
that is about 2 s per 400-token input for the 135M backbone and several times more for the 0.5B one, so a
real dataset takes hours. With the backbone frozen, each code's head input (`Verifier.embed_texts`: the last
hidden state at the end-of-turn token) is computed once, without gradients and with the shared-prompt scoring
path, and the head is then fitted on those vectors in seconds, for as many epochs as wanted. The price: a
linear map of fixed features ranks codes less well than a fine-tuned model; it is an option
(``--head-only``), not the paper's recipe.

The same losses (`bt_loss`, `bce_loss`) and optimiser settings as fine-tuning apply: AdamW, linear decay to 0
without warmup, gradient clipping, seeded data order. The features are computed in the precision the verifier
will score in (bf16 where faster) and cached in ``OUT/checkpoints/features.pt`` as they are made, so a killed
run resumes without recomputing them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mucode.runs import replacing
from mucode.verifier.model import Verifier

FEATURES_FILE = "features.pt"
#: Seconds between saves of the feature cache while it is being computed.
SAVE_EVERY = 60.0

Key = tuple[str, str]  # (prompt, code)


def compute_features(verifier: Verifier, keys: Sequence[Key], cache: Path,
                     progress: Callable[[int], None] | None = None) -> dict[Key, torch.Tensor]:
    """float32 head inputs of every (prompt, code) in ``keys``, reusing and extending the cache file ``cache``.

    Codes are embedded a prompt at a time (so its prefix is shared); the cache is rewritten atomically at most
    every `SAVE_EVERY` seconds and at the end. ``progress`` gets the number of codes embedded by each call.
    """
    features = load_features(cache)
    missing: dict[str, list[str]] = {}
    for prompt, code in dict.fromkeys(keys):
        if (prompt, code) not in features:
            missing.setdefault(prompt, []).append(code)
    saved = time.monotonic()
    for prompt, codes in missing.items():
        rows = verifier.embed_texts([(prompt, code) for code in codes]).float()
        for code, row in zip(codes, rows, strict=True):
            features[(prompt, code)] = row.clone()
        if progress:
            progress(len(codes))
        if time.monotonic() - saved > SAVE_EVERY:
            save_features(cache, features)
            saved = time.monotonic()
    if missing:
        save_features(cache, features)
    return features


def load_features(path: Path) -> dict[Key, torch.Tensor]:
    """The cached features in ``path``, or none when it does not exist."""
    if not path.is_file():
        return {}
    stored = torch.load(path, weights_only=True)
    return {(prompt, code): row for (prompt, code), row in zip(stored["keys"], stored["features"], strict=True)}


def save_features(path: Path, features: dict[Key, torch.Tensor]) -> None:
    """Write the cache to a temporary file and rename it over ``path``: a kill leaves the old cache or the new."""
    with replacing(path) as scratch:
        torch.save({"keys": [list(key) for key in features], "features": torch.stack(list(features.values()))},
                   scratch)


Objective = Callable[[torch.nn.Module, Sequence[torch.Tensor]], tuple[torch.Tensor, float]]


def fit_head(head: torch.nn.Module, inputs: Sequence[torch.Tensor], objective: Objective, *,
             optimisation: Any) -> dict[str, Any]:
    """Fit a float32 copy of ``head`` and copy the result back into ``head``.

    ``inputs`` are tensors with one row per training item (BT: chosen and rejected features; BCE: features and
    labels); ``objective(head, batch)`` returns a batch's loss and how many of its items the head gets right.
    ``optimisation`` is the job's `mucode.jobs.Optimisation` (its micro-batch size does not apply: a batch
    is one matrix product). Returns the training record verifier.json keeps, with loss and accuracy per epoch.
    """
    items = len(inputs[0])
    generator = torch.Generator().manual_seed(optimisation.seed)
    fitted = copy.deepcopy(head).float().requires_grad_(True)
    total = math.ceil(items / optimisation.batch_size) * optimisation.epochs
    optimiser = torch.optim.AdamW(fitted.parameters(), lr=optimisation.learning_rate,
                                  weight_decay=optimisation.weight_decay, eps=optimisation.adam_epsilon)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0 - step / total)
    history = []
    for epoch in range(optimisation.epochs):
        loss_sum, correct = 0.0, 0.0
        for indices in torch.randperm(items, generator=generator).split(optimisation.batch_size):
            loss, right = objective(fitted, [tensor[indices] for tensor in inputs])
            optimiser.zero_grad()
            loss.backward()
            if optimisation.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(fitted.parameters(), optimisation.max_grad_norm)
            optimiser.step()
            schedule.step()
            loss_sum += loss.item() * len(indices)
            correct += right
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / items, 6), "accuracy": round(correct / items, 4)})
    with torch.no_grad():
        for target, source in zip(head.parameters(), fitted.parameters(), strict=True):
            target.copy_(source.to(target.dtype))
    last = history[-1]
    return {"steps": total, "epochs": float(optimisation.epochs), "train_loss": last["loss"],
            "last_logged": {"step": total, "loss": last["loss"], "accuracy": last["accuracy"]},
            "log_history": history}
