"""Settings: read once from SMSFLOWS_* and .env; a bad value names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import SettingsError
from app.settings import Settings, load_settings


def test_defaults_match_the_mobitex_spec() -> None:
    s = load_settings({}, None)
    assert s.mo_allowed_ips == ("213.5.10.19", "213.5.10.22")
    assert s.mo_path == "/mobitex/mo"
    assert s.database_url == "sqlite+aiosqlite:///var/smsflows.db"
    assert s.trusted_proxies == ()
    assert s.mobitex_url == "https://api.mobitex.pl/sms.php"
    assert s.sqlite_synchronous == "FULL"


def test_lists_are_comma_separated_and_cidr_is_accepted() -> None:
    s = load_settings({"SMSFLOWS_MO_ALLOWED_IPS": "213.5.10.19, 10.0.0.0/8 ,", "SMSFLOWS_PORT": "9000"}, None)
    assert s.mo_allowed_ips == ("213.5.10.19", "10.0.0.0/8")
    assert s.port == 9000


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SMSFLOWS_PORT": "eighty"}, "SMSFLOWS_PORT"),
        ({"SMSFLOWS_MO_ALLOWED_IPS": "213.5.10.300"}, "SMSFLOWS_MO_ALLOWED_IPS"),
        ({"SMSFLOWS_TRUSTED_PROXIES": "proxy.local"}, "SMSFLOWS_TRUSTED_PROXIES"),
        ({"SMSFLOWS_MO_PATH": "mobitex"}, "SMSFLOWS_MO_PATH"),
        ({"SMSFLOWS_DATABASE_URL": "mysql://x"}, "SMSFLOWS_DATABASE_URL"),
        ({"SMSFLOWS_SQLITE_SYNCHRONOUS": "OFF"}, "SMSFLOWS_SQLITE_SYNCHRONOUS"),
        ({"SMSFLOWS_MO_MAX_BODY": "0"}, "SMSFLOWS_MO_MAX_BODY"),
        ({"SMSFLOWS_WRITER_LANES": "0"}, "SMSFLOWS_WRITER_LANES"),
        ({"SMSFLOWS_WRITER_LANES": "9"}, "SMSFLOWS_WRITER_LANES"),
        ({"SMSFLOWS_WRITER_LANES": "two"}, "SMSFLOWS_WRITER_LANES"),
    ],
)
def test_bad_value_stops_startup_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env, None)
    assert names in str(err.value)


def test_writer_lanes_out_of_range_says_what_is_allowed() -> None:
    with pytest.raises(
        SettingsError, match=r"SMSFLOWS_WRITER_LANES: 0 is out of range; expected an integer from 1 to 8"
    ):
        load_settings({"SMSFLOWS_WRITER_LANES": "0"}, None)
    assert load_settings({"SMSFLOWS_WRITER_LANES": "4"}, None).writer_lanes == 4


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# local settings\nSMSFLOWS_PORT=8100\nexport SMSFLOWS_MO_PATH='/in'\nSMSFLOWS_API_TOKEN=\"abc\"\n"
    )
    s = load_settings({"SMSFLOWS_PORT": "8200"}, env_file)
    assert (s.port, s.mo_path, s.api_token) == (8200, "/in", "abc")


def test_malformed_env_file_line_is_reported_with_its_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SMSFLOWS_PORT=8100\nnonsense\n")
    with pytest.raises(SettingsError, match=r"\.env:2"):
        load_settings({}, env_file)


def test_secrets_never_appear_in_repr() -> None:
    s = load_settings({"SMSFLOWS_MOBITEX_PASSWORD": "hunter2", "SMSFLOWS_API_TOKEN": "t0ken"}, None)
    shown = repr(s)
    assert "hunter2" not in shown and "t0ken" not in shown
    assert "mobitex_password='***'" not in shown and "mobitex_password=***" in shown


def test_settings_struct_forbids_unknown_fields() -> None:
    assert Settings.__struct_config__.forbid_unknown_fields


def test_database_password_is_hidden_in_repr() -> None:
    s = load_settings({"SMSFLOWS_DATABASE_URL": "postgresql+asyncpg://app:s3cret@db.local/sms"}, None)
    assert "s3cret" not in repr(s)
    assert "app:***@db.local" in repr(s)


def test_log_level_is_case_insensitive() -> None:
    assert load_settings({"SMSFLOWS_LOG_LEVEL": "debug"}, None).log_level == "DEBUG"


def test_the_make_run_file_is_read_between_env_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SMSFLOWS_API_TOKEN=from-env-file\nSMSFLOWS_PORT=8100\n")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "make-run.env").write_text(
        "# written by make run\nSMSFLOWS_API_TOKEN=dev\nSMSFLOWS_MOBITEX_USER=smsflows\n"
        "SMSFLOWS_MOBITEX_PASSWORD=smsflows\nSMSFLOWS_SEND_RATE=5\n"
    )
    s = load_settings({"SMSFLOWS_SEND_RATE": "7"}, tmp_path / ".env")
    assert s.api_token == "dev"  # make run's value wins over .env
    assert s.port == 8100  # what make run does not set still comes from .env
    assert s.send_rate == 7.0  # the process environment wins over both
    assert s.sends_for_real  # as the service under make run: the CLI judges sending the same way
    assert load_settings({}, None).api_token is None  # no files at all when asked for none
