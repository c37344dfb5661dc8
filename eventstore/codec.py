"""JSON in and out, compact and fast (pydantic-core's Rust codec, already a dependency).

Strict on input: ``NaN`` and ``Infinity`` are not JSON and are refused.
"""

from __future__ import annotations

from typing import Any

import pydantic_core


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII characters kept as they are."""
    return pydantic_core.to_json(value).decode()


def dump_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return pydantic_core.to_json(value)


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises ``ValueError`` for anything that is not JSON."""
    return pydantic_core.from_json(text, allow_inf_nan=False)
