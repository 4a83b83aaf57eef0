"""What an API's finish reason means for a trace's verdict, before any verifier looks at it.

Traces carry Gemini's names (`STOP`, `MAX_TOKENS`, `SAFETY`, …): the OpenAI-compatible backend
maps its own (`stop`, `length`, `content_filter`) onto them, and a blocked prompt is
`PROMPT_BLOCKED:<blockReason>`. Every value of google-genai's `FinishReason` (1.x–3.x) is listed;
a value not listed (a newer API) is an `error` that names it, never a crash.
"""
from __future__ import annotations

# The model finished its answer: the verifier decides.
FINISHED = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})
# Cut short by a token limit: the answer is incomplete.
TRUNCATED = frozenset({"MAX_TOKENS", "CONTINUATION"})
# Withheld by a content policy: the API did not let the answer through.
WITHHELD = frozenset({
    "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "ESCALATION",
})
# Anything else the API names, with what to do about it.
ERRORS = {
    "OTHER": "the API stopped for an unspecified reason",
    "MALFORMED_FUNCTION_CALL": "the model wrote a malformed function call (the suite sends no tools)",
    "UNEXPECTED_TOOL_CALL": "the model called a tool the request did not declare",
    "TOO_MANY_TOOL_CALLS": "the model made too many tool calls",
    "MISSING_THOUGHT_SIGNATURE": "the request lacked a thought signature",
    "MALFORMED_RESPONSE": "the API produced a malformed response",
    "IMAGE_OTHER": "image generation stopped", "NO_IMAGE": "the model produced no image",
    "PUP_LIMITED_DISABLED": ("the account is limited under the Prohibited Use Policy; "
                             "check the Google AI Studio account"),
    "MISSING_CANDIDATE": "the API sent fewer candidates than were asked for",
    "ABORTED": "the server aborted the request (vLLM: out of memory, a client disconnect, a restart)",
}


def finish_verdict(reason: str) -> tuple[str, str] | None:
    """(verdict, detail) decided by the finish reason alone, or None when the verifier decides."""
    if reason in FINISHED:
        return None
    if reason.startswith("PROMPT_BLOCKED"):
        return "blocked", f"the prompt was blocked ({reason.partition(':')[2] or 'no reason given'})"
    if reason in TRUNCATED:
        return "truncated", f"finishReason {reason} (raise model.max_output_tokens?)"
    if reason in WITHHELD:
        return "blocked", f"finishReason {reason}: the API withheld the answer"
    if reason in ERRORS:
        return "error", f"finishReason {reason}: {ERRORS[reason]}"
    return "error", (f"finishReason {reason}: not a finish reason rlhf-eval knows (a newer API? a team's provider "
                     "gives Gemini's names: see rlhf_eval/finish.py)")


def withheld(reason: str) -> bool:
    """Whether the API withheld the answer (then whatever text or logprobs came with it are not scored)."""
    return reason.startswith("PROMPT_BLOCKED") or reason in WITHHELD
