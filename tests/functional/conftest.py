"""Fixtures: the real app on a real SQLite file under ``tmp_path``, and a real loopback sink."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp.plugin import AiohttpClient, AiohttpServer

from api.app import create_app
from api.settings import Settings
from tests.functional.helpers import ADMIN, ADMIN_TOKEN, Client
from tests.sink import Sink

MakeClient = Callable[..., Awaitable[Client]]

HERE = Path(__file__).parent


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Test settings: a fresh database, a known admin token, loopback destinations allowed."""
    return Settings(
        db=tmp_path / "dp.sqlite3",
        admin_token=ADMIN_TOKEN,
        allow_private_destinations=True,
        delivery_timeout=2,
    )


@pytest.fixture
async def app_client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """A client of the real app, started (store open, read models caught up, worker running)."""
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, settings: Settings, tmp_path: Path) -> MakeClient:
    """Start another app whose settings differ from ``settings`` by the given fields.

    Each one gets its own database file unless ``db`` is given.
    """
    numbers = itertools.count(1)

    async def make(**overrides: Any) -> Client:
        overrides.setdefault("db", tmp_path / f"other-{next(numbers)}.sqlite3")
        changed = Settings.model_validate({**settings.model_dump(), **overrides})
        return await aiohttp_client(create_app(changed))

    return make


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers that authenticate as the admin."""
    return dict(ADMIN)


@pytest.fixture
async def sink(aiohttp_server: AiohttpServer) -> Sink:
    """A recording loopback sink served by pytest-aiohttp; ``sink.url(path)`` addresses it."""
    receiver = Sink()
    server = await aiohttp_server(receiver.app)
    receiver.base_url = str(server.make_url("")).rstrip("/")
    return receiver
