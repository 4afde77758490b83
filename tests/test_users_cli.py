"""``smsflows users``: adding, listing, disabling and changing passwords from the command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from argon2 import PasswordHasher

from tests.test_cli import _run


def _env(tmp_path: Path) -> dict[str, str]:
    return {"SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'x.db'}"}


def test_users_add_stores_an_argon2id_hash_and_the_audit_log_says_who(tmp_path: Path) -> None:
    env = _env(tmp_path)
    added = _run(
        ["users", "add", "anna", "--role", "admin", "--password-stdin"],
        env,
        tmp_path,
        stdin="a good password\n",
    )
    assert added.returncode == 0, added.stderr
    assert "user anna added (admin)" in added.stdout
    db = sqlite3.connect(tmp_path / "var" / "x.db")
    (hashed,) = db.execute("SELECT password_hash FROM users WHERE name = 'anna'").fetchone()
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "a good password")
    actor, action = db.execute("SELECT actor, action FROM audit_log").fetchone()
    assert actor.startswith("cli") and action == "users.add"


def test_users_add_refuses_a_short_password_a_bad_role_and_a_taken_name(tmp_path: Path) -> None:
    env = _env(tmp_path)
    short = _run(
        ["users", "add", "anna", "--role", "admin", "--password-stdin"], env, tmp_path, stdin="abc\n"
    )
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    assert "Traceback" not in short.stderr
    role = _run(["users", "add", "anna", "--role", "boss", "--password-stdin"], env, tmp_path, stdin="x" * 9)
    assert role.returncode == 2 and "boss" in role.stderr
    ok = ["users", "add", "anna", "--role", "viewer", "--password-stdin"]
    assert _run(ok, env, tmp_path, stdin="a good password\n").returncode == 0
    again = _run(ok, env, tmp_path, stdin="a good password\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    quiet = _run([*ok, "--exists-ok"], env, tmp_path, stdin="")
    assert quiet.returncode == 0 and "exists already" in quiet.stdout


def test_users_list_disable_and_passwd(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _run(
        ["users", "add", "piotr", "--role", "operator", "--password-stdin"],
        env,
        tmp_path,
        stdin="first password\n",
    )
    listed = _run(["users", "list"], env, tmp_path)
    assert "piotr" in listed.stdout and "operator" in listed.stdout and "active" in listed.stdout
    assert _run(["users", "disable", "piotr"], env, tmp_path).returncode == 0
    assert "disabled" in _run(["users", "list"], env, tmp_path).stdout
    changed = _run(["users", "passwd", "piotr", "--password-stdin"], env, tmp_path, stdin="second password\n")
    assert changed.returncode == 0, changed.stderr
    db = sqlite3.connect(tmp_path / "var" / "x.db")
    hashed, version = db.execute("SELECT password_hash, session_version FROM users").fetchone()
    assert PasswordHasher().verify(hashed, "second password")
    assert version == 3  # each change revoked the sessions before it
    missing = _run(["users", "disable", "nobody"], env, tmp_path)
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr
