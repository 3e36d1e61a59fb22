"""OpenAI's error shape for everything under ``/v1``: ``{"error": {"message", "type", "param", "code"}}``.

The SDKs read ``message``; ``param`` names the request field that is wrong and ``code`` a
machine-readable reason. Statuses are OpenAI's: 400 bad parameters, 401 a bad key, 404 an
unknown route, 503 the model or the daemon cannot take the request now.
"""

from __future__ import annotations

from typing import Any

from ambient.errors import AmbientError, ModelUnavailable
from ambient.validation import ClientAPI

_TYPES = {401: "invalid_request_error", 403: "invalid_request_error"}
_CODES = {
    401: "invalid_api_key",
    403: "forbidden",
    404: "unknown_url",
    405: "method_not_allowed",
    413: "request_too_large",
}


class OpenAIError(AmbientError):
    """A refusal that names the request field at fault (``param``) and a code, as OpenAI's do."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.param = param
        self.code = code
        self.http_status = status


def bad_param(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(message, param=param, code=code)


def error_body(status: int, message: str, exc: BaseException | None) -> dict[str, Any]:
    """The body of an error answer under ``/v1`` (the daemon's errors middleware calls it)."""
    if status == 404 and exc is None:  # an unknown route: say what there is (a base model has no chat)
        message = f"{message.split(':')[0]}: ambient's /v1 serves POST /v1/completions and GET /v1/models"
    param = getattr(exc, "param", None)
    code = getattr(exc, "code", None)
    if code is None:
        code = "model_unavailable" if isinstance(exc, ModelUnavailable) else _CODES.get(status)
    kind = "server_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


V1 = ClientAPI(prefix="/v1", error_body=error_body, error_schema="OpenAIError")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
