"""A cheap estimate of the tokens a request needs, to skip providers it cannot fit. Pure.

Real tokenisers differ by model and cost far more than the call's overhead budget, so the
chain uses a rough rule: **a token is about four characters** (OpenAI's rule of thumb for
English) of everything the model reads: each message's text (system prompt included), the
tool calls and tool results in the history, and the tool definitions (names, descriptions,
JSON Schemas); plus a few tokens a message for the roles and separators; plus the answer's
own limit (``max_tokens`` / ``max_completion_tokens``), since the window holds prompt and
answer together.

The estimate only ever *skips* a provider whose ``context_window`` it clearly exceeds;
it leans low (images are not counted, code and non-Latin text take more tokens than four
characters each), so a borderline request is still sent and a provider's own "too long"
refusal, which fails over as well, has the last word.
"""

from __future__ import annotations

import json
from math import ceil

from flexiai_django.chat_types import ChatRequest, Message, Tool

#: Characters a token stands for, on average.
CHARS_PER_TOKEN = 4
#: Tokens a message costs besides its text (role, separators), as OpenAI counts them.
MESSAGE_OVERHEAD = 4


def _message_chars(message: Message) -> int:
    chars = len(message.content)
    for call in message.tool_calls:
        chars += len(call.name) + len(call.arguments)
    return chars


def _tool_chars(tool: Tool) -> int:
    schema = json.dumps(tool.parameters, separators=(",", ":")) if tool.parameters else ""
    return len(tool.name) + len(tool.description or "") + len(schema)


def prompt_tokens(request: ChatRequest) -> int:
    """The request's prompt, in estimated tokens."""
    chars = sum(_message_chars(m) for m in request.messages)
    chars += sum(_tool_chars(t) for t in request.tools)
    return ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(request.messages)


def needed_tokens(request: ChatRequest) -> int:
    """The context window the request needs: its prompt plus the answer's limit, if set."""
    return prompt_tokens(request) + (request.token_limit or 0)
