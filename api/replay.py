"""``datapusher replay``: ask a running server to replay deliveries, with a progress bar.

It counts what matches (``GET /api/deliveries/``), then replays it one page at a time
(``POST /api/deliveries/replay/`` with ``limit`` and ``after``), so the bar moves with the
work the server has really recorded. It speaks plain HTTP with the standard library: it is
a small operator's tool, not part of the service.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, TextIO

from api.progress import ProgressBar

PAGE: Final = 200


class ReplayError(Exception):
    """The server refused or could not be reached; the message says why."""


@dataclass(frozen=True, slots=True)
class Filters:
    status: str | None = None
    account: int | None = None
    destination: int | None = None
    since: str | None = None
    until: str | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(slots=True)
class Summary:
    matched: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


class Client:
    """JSON over HTTP to one server, with the admin token."""

    def __init__(self, base_url: str, admin_token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ReplayError(f"{method} {path}: {exc.code} {_error_text(exc)}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ReplayError(f"cannot reach {self.base_url}: {exc}") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", ""))
    except ValueError:
        return exc.reason


def count(client: Client, filters: Filters) -> int:
    """How many deliveries match now."""
    total, after = 0, None
    while True:
        query = {**filters.given(), "limit": 1000, **({"after": after} if after else {})}
        page = client.call("GET", "/api/deliveries/?" + urllib.parse.urlencode(query))
        total += len(page["items"])
        after = page["next_after"]
        if after is None:
            return total


def replay(client: Client, filters: Filters, *, out: TextIO | None = None) -> Summary:
    """Replay every delivery matching ``filters``, one page per request, drawing progress
    on ``out`` (standard error by default)."""
    summary = Summary(matched=count(client, filters))
    bar = ProgressBar(summary.matched, out or sys.stderr)
    after: str | None = None
    while True:
        body = {**filters.given(), "limit": PAGE, **({"after": after} if after else {})}
        answer = client.call("POST", "/api/deliveries/replay/", body)
        summary.replayed += answer["replayed"]
        summary.skipped.update(item["reason"] for item in answer["skipped"])
        bar.show(summary.replayed + sum(summary.skipped.values()))
        after = answer.get("next_after")
        if after is None:
            bar.finish()
            return summary
