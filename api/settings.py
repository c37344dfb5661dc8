"""Settings: read once at start-up from flags and the environment into a frozen model."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

ENVIRONMENT = {
    "host": "DATAPUSHER_HOST",
    "port": "DATAPUSHER_PORT",
    "db": "DATAPUSHER_DB",
    "admin_token": "DATAPUSHER_ADMIN_TOKEN",
    "allow_private_destinations": "DATAPUSHER_ALLOW_PRIVATE_DESTINATIONS",
    "retry_schedule": "DATAPUSHER_RETRY_SCHEDULE",
    "delivery_timeout": "DATAPUSHER_DELIVERY_TIMEOUT",
    "max_body_bytes": "DATAPUSHER_MAX_BODY_BYTES",
    "log_format": "DATAPUSHER_LOG_FORMAT",
    "log_level": "DATAPUSHER_LOG_LEVEL",
    "shutdown_grace": "DATAPUSHER_SHUTDOWN_GRACE",
}


class Settings(BaseModel):
    """Everything configurable; nothing reads ``os.environ`` after this is built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    db: Path = Path("./datapusher.sqlite3")
    admin_token: SecretStr | None = None
    allow_private_destinations: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    delivery_timeout: float = Field(default=15.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    delivery_concurrency: int = Field(default=64, ge=1)
    per_destination_concurrency: int = Field(default=8, ge=1)
    shutdown_grace: float = Field(default=5.0, ge=0)
    """Seconds deliveries in flight get to finish at shutdown before they are left pending."""
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """``warning`` drops the per-request and per-attempt lines (about 10% of ingest CPU)."""

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must not be negative")
        return value

    @field_validator("allow_private_destinations", mode="before")
    @classmethod
    def _parse_flag(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return value

    @classmethod
    def load(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        """Flags win over the environment, which wins over the defaults."""
        values: dict[str, Any] = {
            field: environ[name] for field, name in ENVIRONMENT.items() if environ.get(name)
        }
        values.update({key: value for key, value in flags.items() if value is not None})
        return cls.model_validate(values)

    @property
    def admin_token_path(self) -> Path:
        return self.db.with_name(self.db.name + ".admin-token")


def resolve_admin_token(settings: Settings) -> tuple[str, Path | None]:
    """The admin token, and the file it came from when it was not configured.

    Without ``DATAPUSHER_ADMIN_TOKEN`` the first start writes a new token beside the database,
    readable by its owner only (0600), and later starts read it back.
    """
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), None
    path = settings.admin_token_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip(), path
