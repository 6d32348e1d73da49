"""What the resources say to a client: their descriptions (app.py registers them with the MCP SDK)."""

from __future__ import annotations

RECENT_THREADS = 50

SPECIALISTS = (
    "The specialists: descriptions, model chains, and which models are usable now and why (or which env var would "
    "enable them)."
)
USAGE = (
    "Usage since the state store began counting (`since`; shared by every server on the same store, kept across "
    "restarts): calls, tokens and cost per specialist and in total, and the estimated saving against sending "
    "everything to the priciest specialist (a named caller's: its own)."
)
THREADS = (
    f"Recent conversations, newest first (up to {RECENT_THREADS}): thread_id, title (the first task), turns, "
    "specialists that answered, created and updated times (a named caller's: its own)."
)
THREAD = "One conversation as JSON: every turn's task, context, files, answer, specialist, model and time."
ANSWER = (
    "The whole answer of a call whose result was too big for the client and carried only its head (the result's "
    "answer_uri; a named caller's: its own). offset and length (characters) read a part of it; without them, all."
)
SCHEMAS = (
    "JSON Schemas of the structured results (delegate and ask_*, delegate_result, panel), for programs that "
    "validate them; tools do not declare them, so clients show their model the answer as text."
)
