"""Property-based tests: whatever an allowed client posts, nothing is lost and nothing is a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from app.server import server_options
from tests.conftest import free_port, make_settings, mo_form

FIELDS = ["number", "sender", "text", "sms_id", "smcsc", "time", "ext_id"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=windows-1250",
    "application/x-www-form-urlencoded; charset=utf-8",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    "application/json",
    "",
]


class ThreadedService:
    """The real service in a thread of its own, so synchronous hypothesis tests can call it."""

    def __init__(self, database_url: str) -> None:
        self.settings = make_settings(database_url)
        port = free_port()
        config = uvicorn.Config(
            create_app(self.settings), host="127.0.0.1", port=port, **server_options(self.settings)
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}{self.settings.mo_path}"
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> ThreadedService:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("service failed to start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def threaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    svc = ThreadedService(url)
    with svc:
        yield svc.url, url


def _totals(database_url: str) -> int:
    """Deliveries counted plus requests quarantined: it must grow by one with every 200."""

    async def read() -> int:
        engine = create_async_engine(database_url)
        async with engine.connect() as conn:
            deliveries = (
                await conn.execute(text("SELECT coalesce(sum(deliveries), 0) FROM inbound_messages"))
            ).scalar()
            held = (await conn.execute(text("SELECT count(*) FROM quarantine"))).scalar()
        await engine.dispose()
        return int(deliveries or 0) + int(held or 0)

    return asyncio.run(read())


field_values = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
    st.from_regex(r"[a-f0-9]{32}", fullmatch=True),
)
mutated_forms = st.builds(
    lambda base, drop, changes: {k: v for k, v in {**base, **changes}.items() if k not in drop},
    st.builds(mo_form),
    st.sets(st.sampled_from(FIELDS), max_size=3),
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), field_values, max_size=4),
)


def _encode(form: dict[str, str], charset: str) -> bytes:
    return "&".join(
        f"{quote_from_bytes(k.encode())}={quote_from_bytes(v.encode(charset, 'replace'))}"
        for k, v in form.items()
    ).encode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=600), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bodies_never_get_5xx_and_are_never_lost(
    threaded: tuple[str, str], body: bytes, content_type: str
) -> None:
    url, database_url = threaded
    before = _totals(database_url)
    headers = {"Content-Type": content_type} if content_type else {}
    resp = httpx.post(url, content=body, headers=headers, timeout=30)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert _totals(database_url) == before + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=mutated_forms, charset=st.sampled_from(["utf-8", "cp1250", "iso-8859-2"]))
def test_mutated_forms_are_stored_or_quarantined_never_lost(
    threaded: tuple[str, str], form: dict[str, str], charset: str
) -> None:
    url, database_url = threaded
    before = _totals(database_url)
    resp = httpx.post(
        url,
        content=_encode(form, charset),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert _totals(database_url) == before + 1


def test_threaded_fixture_path_is_a_temp_file(threaded: tuple[str, str]) -> None:
    _, database_url = threaded
    if database_url.startswith("sqlite"):
        assert Path(database_url.split("///", 1)[1]).exists()
    else:
        assert "smsflows_test_" in database_url
