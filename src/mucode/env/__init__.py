"""The episode: prompt templates, code extraction, execution feedback, stop rules, batched turns.

    from mucode.env import Episode, EpisodeConfig, step_episodes
    episodes = [Episode.start(problem, EpisodeConfig(max_turns=3)) for problem in problems]
    while running := [episode for episode in episodes if not episode.done]:
        replies = backend.generate([episode.messages for episode in running])
        step_episodes(running, replies, sandbox)

Best-of-N evaluates several replies per state with `evaluate_candidates` and commits the chosen one with
`Episode.advance`. See docs/episode.md.
"""

from mucode.env.episode import (
    STOP_RULES,
    CandidateResult,
    Episode,
    EpisodeConfig,
    PendingCandidates,
    SandboxLike,
    Turn,
    evaluate_candidates,
    max_turns_reached,
    passed_oracle,
    passed_public,
    step_episodes,
    submit_candidates,
)
from mucode.env.extract import CODE_BLOCK_END, NO_CODE_FEEDBACK, Extraction, extract_code, restore_closing_fence
from mucode.env.feedback import DEFAULT_FEEDBACK_MAX_CHARS, FEEDBACK_PREFIX, feedback_message, truncate_middle
from mucode.env.prompts import (
    DEFAULT_TEMPLATE,
    INSTRUCTIONS,
    PAPER_TEMPLATE,
    PLACEHOLDERS,
    SHORT_TEMPLATE,
    TEMPLATES,
    TESTLESS_TEMPLATE,
    build_prompt,
    echoes_placeholder,
    function_signature,
)

__all__ = [
    "CODE_BLOCK_END",
    "DEFAULT_FEEDBACK_MAX_CHARS",
    "DEFAULT_TEMPLATE",
    "FEEDBACK_PREFIX",
    "INSTRUCTIONS",
    "NO_CODE_FEEDBACK",
    "PAPER_TEMPLATE",
    "PLACEHOLDERS",
    "SHORT_TEMPLATE",
    "STOP_RULES",
    "TEMPLATES",
    "TESTLESS_TEMPLATE",
    "CandidateResult",
    "Episode",
    "EpisodeConfig",
    "Extraction",
    "PendingCandidates",
    "SandboxLike",
    "Turn",
    "build_prompt",
    "echoes_placeholder",
    "evaluate_candidates",
    "extract_code",
    "feedback_message",
    "function_signature",
    "max_turns_reached",
    "passed_oracle",
    "passed_public",
    "restore_closing_fence",
    "step_episodes",
    "submit_candidates",
    "truncate_middle",
]
