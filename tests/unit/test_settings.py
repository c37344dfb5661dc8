"""Settings: flags over environment over defaults; the generated admin token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import DEFAULT_RETRY_SCHEDULE, Settings, resolve_admin_token


def test_flags_win_over_environment_and_environment_over_defaults() -> None:
    """A flag given beats its variable; a variable beats the default."""
    environ = {"DATAPUSHER_PORT": "9000", "DATAPUSHER_HOST": "0.0.0.0"}
    settings = Settings.load({"port": 9100, "host": None}, environ)
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE


def test_schedule_and_flag_parse_from_strings() -> None:
    """The comma-separated schedule and a 1/0 flag are read from the environment."""
    environ = {
        "DATAPUSHER_RETRY_SCHEDULE": "1, 2.5,10",
        "DATAPUSHER_ALLOW_PRIVATE_DESTINATIONS": "1",
    }
    settings = Settings.load({}, environ)
    assert settings.retry_schedule == (1.0, 2.5, 10.0)
    assert settings.allow_private_destinations is True


def test_bad_values_are_refused() -> None:
    """A negative delay or a port out of range does not start the service."""
    with pytest.raises(ValidationError):
        Settings.load({}, {"DATAPUSHER_RETRY_SCHEDULE": "5,-1"})
    with pytest.raises(ValidationError):
        Settings.load({"port": 70000}, {})


def test_admin_token_is_generated_once_into_a_private_file(tmp_path: Path) -> None:
    """Without a configured token, the first start writes one (0600); later starts reuse it."""
    settings = Settings(db=tmp_path / "dp.sqlite3")
    token, path = resolve_admin_token(settings)
    assert path == tmp_path / "dp.sqlite3.admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert resolve_admin_token(settings) == (token, path)


def test_configured_admin_token_writes_no_file(tmp_path: Path) -> None:
    """A token from the environment is used as is and nothing is written."""
    settings = Settings.load({"db": str(tmp_path / "x.sqlite3")}, {"DATAPUSHER_ADMIN_TOKEN": "s3"})
    assert resolve_admin_token(settings) == ("s3", None)
    assert not settings.admin_token_path.exists()
