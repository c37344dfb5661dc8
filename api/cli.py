"""The ``datapusher`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web
from pydantic import ValidationError

from api.app import create_app
from api.logs import configure_logging
from api.settings import Settings

log = structlog.get_logger("api")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datapusher", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API and deliver payloads")
    serve.add_argument("--host", help="address to listen on (DATAPUSHER_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (DATAPUSHER_PORT, 8000)")
    serve.add_argument("--db", help="SQLite file (DATAPUSHER_DB, ./datapusher.sqlite3)")
    serve.add_argument(
        "--allow-private-destinations",
        action="store_true",
        default=None,
        help="allow destinations on loopback/private addresses (off by default: SSRF guard)",
    )
    serve.add_argument("--retry-schedule", help="comma-separated seconds between attempts")
    serve.add_argument("--delivery-timeout", type=float, help="seconds per attempt (15)")
    serve.add_argument("--max-body-bytes", type=int, help="request body limit (1048576)")
    serve.add_argument("--log-format", choices=["auto", "json", "console"])
    serve.add_argument(
        "--shutdown-grace", type=float, help="seconds deliveries in flight get at shutdown (5)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        settings = Settings.load(flags, os.environ)
    except ValidationError as exc:
        print(f"datapusher: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    app = create_app(settings)
    log.info("server.starting", host=settings.host, port=settings.port, db=str(settings.db))
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None)
    log.info("server.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
