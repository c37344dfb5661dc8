"""Errors the HTTP edge answers with, each rendered in the one error shape.

The tree (status, code)::

    ApiError
    ├── BadRequest              400 bad_request       body is not JSON, or not a JSON object
    ├── ValidationFailed        400 validation_error  fields failed validation (see ``details``)
    ├── Unauthorized            401 unauthorized      missing or wrong admin token / CL-X-TOKEN
    ├── NotFound                404 not_found         unknown id in the path, or unknown route
    ├── MethodNotAllowed        405 method_not_allowed
    ├── Conflict                409 conflict          e.g. code duplicate_email
    ├── PayloadTooLarge         413 payload_too_large body over --max-body-bytes
    ├── Unavailable             503 unavailable       shutting down, or lost too many races
    └── InternalError           500 internal_error    a bug; logged with its traceback

The shape: ``{"error": "<human message>", "code": "<machine code>", "details": [...]}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.error_code = code or self.code
        self.error_status = status or self.status

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.error_code, "details": self.details}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class ValidationFailed(ApiError):
    status = 400
    code = "validation_error"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


class InternalError(ApiError):
    status = 500
    code = "internal_error"
