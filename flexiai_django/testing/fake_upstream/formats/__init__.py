"""The API formats the fake upstream speaks, looked up by name or by request path.

A new format is one module implementing ``base.ApiFormat`` plus one entry in ``FORMATS``.
"""

from __future__ import annotations

from flexiai_django.testing.fake_upstream.formats.anthropic import Anthropic
from flexiai_django.testing.fake_upstream.formats.base import Api, ApiFormat, Frames, Reply
from flexiai_django.testing.fake_upstream.formats.ollama import Ollama
from flexiai_django.testing.fake_upstream.formats.openai import OpenAI

__all__ = ["FORMATS", "Api", "ApiFormat", "Frames", "Reply", "for_path", "named"]

# In routing order: the first whose path ends a request path serves it.
FORMATS: dict[str, ApiFormat] = {fmt.name: fmt for fmt in (OpenAI(), Anthropic(), Ollama())}


def named(api: str) -> ApiFormat:
    """The format called ``api``; ValueError naming the known ones if there is none."""
    fmt = FORMATS.get(api)
    if fmt is None:
        *others, last = FORMATS
        raise ValueError(f"unknown api {api!r}; expected {', '.join(others)} or {last}")
    return fmt


def for_path(path: str) -> tuple[str, ApiFormat] | None:
    """Split a request path into (what precedes the endpoint, its format), if it is one."""
    for fmt in FORMATS.values():
        if path.endswith(fmt.path):
            return path[: -len(fmt.path)], fmt
    return None
