"""What kind of refusal an upstream's 4xx body is. Pure.

A prompt longer than the model's context window is refused as a 400 by every API, each in
its own words; the chain treats it apart from other bad requests (no trip, try a provider
with a larger window), so it is recognised here.
"""

from __future__ import annotations

import orjson

#: Phrases each API uses: OpenAI and compatible servers, Anthropic, Ollama, llama.cpp, vLLM.
CONTEXT_LENGTH_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "exceeds the context length",
    "exceeds the available context size",
    "exceed_context_size_error",
    "context window",
)


def is_context_length(body: bytes) -> bool:
    """Does this error body say the prompt is longer than the context window?"""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        text = " ".join(str(error.get(k) or "") for k in ("code", "type", "message"))
    else:
        text = str(error)
    text = text.lower()
    return any(phrase in text for phrase in CONTEXT_LENGTH_PHRASES)
