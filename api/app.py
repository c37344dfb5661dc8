"""The app factory: the one place where the parts are wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

import structlog
from aiohttp import web

from api import accounts, deliveries, destinations, history, ingest
from api.directory import TokenDirectory
from api.http import ADMIN_TOKEN, COMMANDS, SETTINGS, SHUTTING_DOWN, STORE, TOKENS
from api.middleware import Handler, admin_auth, context_and_errors, public
from api.service import Commands
from api.settings import Settings, resolve_admin_token
from delivery.sender import Sender
from delivery.worker import DeliveryWorker
from eventstore.sqlite import SQLiteEventStore
from projections.runner import Projections

log = structlog.get_logger("api")

WORKER: Final = web.AppKey("worker", DeliveryWorker)

ID: Final = r"{id:\d+}"
PAYLOAD: Final = "{payload_id:[0-9A-Za-z]+}"


def create_app(settings: Settings) -> web.Application:
    """The application for ``settings``; it opens its resources when it starts."""
    admin_token, token_path = resolve_admin_token(settings)
    if token_path is not None:
        log.info("admin_token.from_file", path=str(token_path))
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[context_and_errors, admin_auth],
    )
    store = SQLiteEventStore(settings.db, synchronous=settings.synchronous)
    app[SETTINGS] = settings
    app[ADMIN_TOKEN] = admin_token
    app[STORE] = store
    app[COMMANDS] = Commands(store)
    app[TOKENS] = TokenDirectory(store)
    app[SHUTTING_DOWN] = asyncio.Event()
    app.on_shutdown.append(_end_live_tails)
    app.cleanup_ctx.append(_open_store)
    app.cleanup_ctx.append(_run_delivery)
    _add_routes(app)
    return app


async def _end_live_tails(app: web.Application) -> None:
    app[SHUTTING_DOWN].set()


async def _open_store(app: web.Application) -> AsyncIterator[None]:
    """Open the log, catch the read models up, and flush every queued append on exit."""
    store = app[STORE]
    await store.open()
    try:
        await Projections(store).start()
        log.info("store.opened", path=str(store.path), head=store.head)
        yield
    finally:
        await store.close()
        log.info("store.closed", head=store.head)


async def _run_delivery(app: web.Application) -> AsyncIterator[None]:
    """Start the sender and the worker; on exit stop the worker, then close the sender."""
    settings = app[SETTINGS]
    sender = Sender(
        timeout=settings.delivery_timeout,
        allow_private=settings.allow_private_destinations,
        limit=settings.delivery_concurrency,
    )
    await sender.start()
    worker = DeliveryWorker(
        app[STORE],
        sender,
        schedule=settings.retry_schedule,
        concurrency=settings.delivery_concurrency,
        per_destination=settings.per_destination_concurrency,
        grace=settings.shutdown_grace,
    )
    task = asyncio.create_task(worker.run(), name="delivery-worker")
    try:
        yield
    finally:
        worker.stop()
        await task
        await sender.close()


def _add_routes(app: web.Application) -> None:
    """Every path is served with and without its trailing slash, as in the original app."""

    def route(path: str, **handlers: Handler) -> None:
        for variant in (path, path.rstrip("/")):
            resource = app.router.add_resource(variant)
            for method, handler in handlers.items():
                resource.add_route(method.upper(), handler)

    route("/api/accounts/", get=accounts.list_accounts, post=accounts.create_account)
    route(
        f"/api/accounts/{ID}/",
        get=accounts.get_account,
        put=accounts.update_account,
        patch=accounts.update_account,
        delete=accounts.delete_account,
    )
    route(f"/api/accounts/{ID}/rotate-token/", post=accounts.rotate_token)
    route(f"/api/accounts/{ID}/destinations/", get=accounts.account_destinations)
    route(
        "/api/destinations/",
        get=destinations.list_destinations,
        post=destinations.create_destination,
    )
    route(
        f"/api/destinations/{ID}/",
        get=destinations.get_destination,
        put=destinations.update_destination,
        patch=destinations.update_destination,
        delete=destinations.delete_destination,
    )
    route(f"/api/destinations/{ID}/enable/", post=destinations.enable_destination)
    route(f"/api/destinations/{ID}/disable/", post=destinations.disable_destination)
    route("/api/data/", post=public(ingest.receive_payload))
    route(f"/api/payloads/{PAYLOAD}/", get=deliveries.get_payload)
    route(f"/api/payloads/{PAYLOAD}/replay/", post=deliveries.replay_payload)
    route("/api/deliveries/", get=deliveries.list_deliveries)
    route("/api/deliveries/replay/", post=deliveries.replay_deliveries)
    route("/api/events/", get=history.list_events)
    route("/api/events/stream/", get=history.stream_events)
    route(f"/api/accounts/{ID}/history/", get=history.account_history)
