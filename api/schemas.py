"""Request bodies (validated with pydantic at the edge) and response bodies.

Unknown fields in a body are ignored, as the original Data Pusher's serializers did, so that
a client may send back what it read.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    StrictInt,
    ValidationError,
)

from api.errors import ValidationFailed
from projections.models import AccountView, DestinationView

MAX_HEADERS = 50
# Headers the service sets itself, or that would break the request framing if overridden.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
M = TypeVar("M", bound=BaseModel)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _digits_to_int(value: Any) -> Any:
    # Form-style clients send ids as strings ("3"); booleans and floats stay refused.
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by Data Pusher and cannot be overridden")
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"header {name!r} has a line break or NUL in its value")
    return headers


Url = Annotated[HttpUrl, Field(max_length=2048)]
Website = Annotated[Url | None, BeforeValidator(_blank_to_none)]
Method = Annotated[Literal["GET", "POST", "PUT"], BeforeValidator(_upper)]
Headers = Annotated[
    dict[str, Annotated[str, Field(max_length=8192)]], AfterValidator(_check_headers)
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
AccountId = Annotated[StrictInt, BeforeValidator(_digits_to_int), Field(ge=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)


class AccountIn(_Body):
    """POST and PUT ``/api/accounts/``: every field (``website`` optional)."""

    email: EmailStr
    account_name: Name
    website: Website = None


class AccountPatch(_Body):
    """PATCH: any subset of the fields."""

    email: EmailStr | None = None
    account_name: Name | None = None
    website: Website = None


class DestinationIn(_Body):
    """POST and PUT ``/api/destinations/``."""

    account: AccountId
    url: Url
    http_method: Method
    headers: Headers = Field(default_factory=dict)


class DestinationPatch(_Body):
    account: AccountId | None = None
    url: Url | None = None
    http_method: Method | None = None
    headers: Headers | None = None


def parse(model: type[M], body: dict[str, Any]) -> M:
    """Validate ``body``; raises ``ValidationFailed`` with one detail per problem."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or None,
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed("the request body is not valid", details=details) from exc


def account_body(view: AccountView, *, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": view.id,
        "email": view.email,
        "account_name": view.account_name,
        "website": view.website,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }
    if token is not None:
        body["app_secret_token"] = token
    return body


def destination_body(view: DestinationView) -> dict[str, Any]:
    return {
        "id": view.id,
        "account": view.account_id,
        "url": view.url,
        "http_method": view.http_method,
        "headers": dict(view.headers),
        "enabled": view.enabled,
        "disabled_reason": view.disabled_reason,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }
