"""The error a malformed API request raises: a leaf, shared by every parser."""

from __future__ import annotations

from typing import Any


class InvalidRequest(ValueError):
    """Turns into an OpenAI-style error body with this status."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value",
                 status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def as_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "invalid_request_error",
                          "param": self.param, "code": self.code}}
