"""Settings: one frozen Struct built once from ``SMSFLOWS_*`` variables (and ``.env``) at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from app.errors import SettingsError

PREFIX = "SMSFLOWS_"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_WRITER_LANES = 8


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the service can be told from outside; see docs/configuration.md."""

    database_url: str = "sqlite+aiosqlite:///var/smsflows.db"
    flows_dir: str = "flows"
    mo_path: str = "/mobitex/mo"
    mo_allowed_ips: tuple[str, ...] = ("213.5.10.19", "213.5.10.22")
    trusted_proxies: tuple[str, ...] = ()
    mo_max_body: int = 65536
    mo_max_text: int = 4096
    api_token: str | None = None
    schema: Literal["token", "open", "off"] = "token"
    metrics: Literal["token", "open", "off"] = "token"
    host: str = "127.0.0.1"
    port: int = 8000
    request_timeout: float = 30.0
    keepalive_timeout: int = 5
    max_connections: int = 1000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    writer_batch_max: int = 512
    writer_lanes: int = 1  # PostgreSQL: batches one process writes at once (SQLite: always 1)
    mobitex_user: str | None = None
    mobitex_password: str | None = None
    mobitex_from: str | None = None
    mobitex_url: str = "https://api.mobitex.pl/sms.php"
    send_mode: Literal["auto", "mobitex", "dry-run"] = "auto"
    dispatcher: bool = True
    send_rate: float = 20.0
    send_rate_per_number: float = 1.0
    send_max_age: int = 3600
    send_lease: int = 60
    send_timeout: float = 20.0
    reply_on_timeout: Literal["retry", "hold"] = "hold"
    send_on_timeout: Literal["retry", "hold"] = "retry"
    send_group_size: int = 500
    action_secret: str | None = None
    replies_per_day: int = 50
    pseudonym_key: str | None = None
    retention_raw_days: int | None = None
    retention_text_days: int | None = None
    retention_purge_hours: int = 0
    # The dashboard: signed session cookies (a secret every worker shares), their lifetime, HTTPS.
    session_secret: str | None = None
    session_hours: int = 12
    secure_cookies: bool = False

    def __post_init__(self) -> None:
        for name in ("mo_allowed_ips", "trusted_proxies"):
            for value in getattr(self, name):
                try:
                    ipaddress.ip_network(value, strict=False)
                except ValueError:
                    raise SettingsError(
                        f"{PREFIX}{name.upper()}: {value!r} is not an IP address or CIDR range "
                        "(expected e.g. 213.5.10.19 or 10.0.0.0/8, comma-separated)"
                    ) from None
        if not self.mo_path.startswith("/"):
            raise SettingsError(f"{PREFIX}MO_PATH: {self.mo_path!r} must start with '/' (e.g. /mobitex/mo)")
        if self.replies_per_day < 0:
            raise SettingsError(f"{PREFIX}REPLIES_PER_DAY: expected 0 (no cap) or a positive integer")
        for name in (
            "mo_max_body",
            "mo_max_text",
            "writer_batch_max",
            "port",
            "request_timeout",
            "keepalive_timeout",
            "max_connections",
            "send_rate",
            "send_rate_per_number",
            "send_max_age",
            "send_lease",
            "send_timeout",
            "send_group_size",
            "session_hours",
        ):
            if getattr(self, name) <= 0:
                numbers = ("send_rate", "send_timeout", "request_timeout")
                kind = "number" if name.startswith(numbers) else "integer"
                raise SettingsError(f"{PREFIX}{name.upper()}: expected a positive {kind}")
        if not 1 <= self.writer_lanes <= MAX_WRITER_LANES:
            # Each lane keeps a connection of the pool (5 kept, 10 more at most) for good.
            raise SettingsError(
                f"{PREFIX}WRITER_LANES: {self.writer_lanes} is out of range; expected an integer from 1 "
                f"to {MAX_WRITER_LANES} (how many batches of MO messages one process writes to "
                "PostgreSQL at once, each on a connection of its own; e.g. 2)"
            )
        if self.send_timeout > self.send_lease / 2:
            # A request still waiting at the end of the lease lets a second worker send it again.
            raise SettingsError(
                f"{PREFIX}SEND_TIMEOUT: {self.send_timeout:g} s is more than half of "
                f"{PREFIX}SEND_LEASE ({self.send_lease} s); lower the timeout or raise the lease"
            )
        if self.send_group_size > 500:
            raise SettingsError(f"{PREFIX}SEND_GROUP_SIZE: Mobitex takes at most 500 numbers per request")
        for name in ("retention_raw_days", "retention_text_days", "retention_purge_hours"):
            value = getattr(self, name)
            if value is not None and value < (1 if name.endswith("days") else 0):
                raise SettingsError(
                    f"{PREFIX}{name.upper()}: expected a positive number of "
                    f"{'days' if name.endswith('days') else 'hours (0 turns it off)'}"
                )
        if not self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL: {_hide_password(self.database_url)!r} is not supported; use "
                "sqlite+aiosqlite:///path/to.db or postgresql+asyncpg://user@host/db"
            )

    def __repr__(self) -> str:
        # The Mobitex password and the API token must never reach a log line or a traceback.
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "database_url":
                value = _hide_password(value)
            parts.append(f"{name}={'***' if name in _SECRETS and value else repr(value)}")
        return f"Settings({', '.join(parts)})"

    def refuse_dev_secrets(self, host: str) -> None:
        """Refuse to serve a well-known development secret on an address other hosts can reach."""
        if is_loopback(host):
            return
        for name in ("api_token", "action_secret", "session_secret", "pseudonym_key"):
            value = getattr(self, name)
            if value is not None and value.strip().lower() in DEV_SECRETS:
                raise SettingsError(
                    f"{PREFIX}{name.upper()} is the development value {value!r}, and the service would "
                    f"listen on {host}, where others can reach it: set {PREFIX}{name.upper()} to a "
                    "secret of your own (python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                    "or listen on 127.0.0.1"
                )

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.mo_allowed_ips)

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.trusted_proxies)

    @property
    def sends_for_real(self) -> bool:
        """``auto`` sends through Mobitex once credentials are set, and records dry runs until then."""
        if self.send_mode == "auto":
            return bool(self.mobitex_user and self.mobitex_password)
        return self.send_mode == "mobitex"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


# What `make run`, the docs and the tests use, and the first guesses of anyone scanning for them.
DEV_SECRETS = frozenset(
    {
        "dev",
        "dev-secret",
        "dev-session-secret",
        "dev-pseudonyms",
        "smsflows",
        "test-token",
        "secret",
        "changeme",
        "password",
    }
)
# The dashboard password `make run` gives its user "dev".
DEV_PASSWORDS = ("dev-password",)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


_SECRETS = frozenset({"mobitex_password", "api_token", "action_secret", "session_secret", "pseudonym_key"})
_LISTS = frozenset({"mo_allowed_ips", "trusted_proxies"})
_OPTIONAL = frozenset({"mobitex_user", "mobitex_from", "retention_raw_days", "retention_text_days"})


def read_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``#`` comments, optional quotes, optional ``export``)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# `make run` writes the values it starts the service with here, and removes the file when it stops:
# every smsflows command run beside it (send, broadcast, balance) then sees the service's settings.
MAKE_RUN_ENV = Path("var/make-run.env")


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Build Settings from the environment; the process environment wins over ``var/make-run.env``
    (only there while `make run` runs), which wins over ``.env``. ``env_file=None`` reads no file."""
    merged: dict[str, str] = read_env_file(env_file) if env_file is not None else {}
    if env_file is not None:
        merged.update(read_env_file(env_file.parent / MAKE_RUN_ENV))
    merged.update(os.environ if environ is None else environ)
    fields = set(Settings.__struct_fields__)
    raw: dict[str, Any] = {}
    for key, value in merged.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in fields:
            continue  # other SMSFLOWS_* variables (e.g. test-only ones) are not ours to judge
        if name in _LISTS:
            raw[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif value == "" and name in _SECRETS | _OPTIONAL:
            raw[name] = None
        elif name in ("log_level", "sqlite_synchronous"):
            raw[name] = value.upper()
        elif name in ("send_mode", "schema", "metrics", "log_format", "reply_on_timeout", "send_on_timeout"):
            raw[name] = value.lower()
        else:
            raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _explain(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's ``... - at `$.port``` into a message that names the variable."""
    message = str(exc)
    head, sep, path = message.rpartition(" - at `$.")
    if not sep:
        return f"invalid settings: {message}"
    field = path.rstrip("`").split("[")[0].split(".")[0]
    return f"{PREFIX}{field.upper()}: {head}"
