"""The user message that returns execution feedback to the model (docs/method.md §2.5).

The paper's template puts a newline after ``Feedback:`` (the reference code uses a space). Only the public
tests' feedback is ever shown. Long tracebacks are cut in the middle: the head names the first failure and the
tail holds the exception line, which is what the model needs most.
"""

from __future__ import annotations

FEEDBACK_PREFIX = "Feedback:\n"
DEFAULT_FEEDBACK_MAX_CHARS = 2000
#: Below this a capped message would be mostly marker; EpisodeConfig rejects smaller caps.
MIN_FEEDBACK_MAX_CHARS = 200


def truncate_middle(text: str, max_chars: int) -> str:
    """text if it fits in max_chars, else its head and tail around a marker saying how much was cut.

    The result never exceeds max_chars characters; max_chars must leave room for the marker.
    """
    if max_chars < MIN_FEEDBACK_MAX_CHARS:
        raise ValueError(f"max_chars={max_chars} is below the minimum of {MIN_FEEDBACK_MAX_CHARS}")
    if len(text) <= max_chars:
        return text
    omitted = len(text) - max_chars
    while True:
        marker = f"\n… {omitted} characters omitted …\n"
        kept = max_chars - len(marker)
        if len(text) - kept == omitted:
            break
        omitted = len(text) - kept  # the marker's own length changed what has to go
    head = kept // 2
    return text[:head] + marker + text[len(text) - (kept - head):]


def feedback_message(feedback: str, max_chars: int = DEFAULT_FEEDBACK_MAX_CHARS) -> str:
    """Content of the user message after a failed turn: ``Feedback:`` + newline + the capped feedback."""
    return FEEDBACK_PREFIX + truncate_middle(feedback, max_chars)
