"""Helpers for dashboard tests: users in the database, a browser-like client that signs in."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.db import users as store
from app.db.engine import session_factory
from app.db.models import Base, utcnow
from app.ingest.writer import message_row
from app.mobitex.mo_form import MoMessage
from app.outbox.table import outbox_row
from app.settings import Settings
from tests.conftest import Service, make_settings, running

PASSWORD = "correct horse battery"
SECRET = "test-session-secret-that-is-long"


def dashboard_settings(database_url: str, **overrides: str) -> Settings:
    return make_settings(database_url, **{"session_secret": SECRET, **overrides})


@asynccontextmanager
async def dashboard_service(database_url: str, **overrides: str) -> AsyncIterator[Service]:
    async with running(dashboard_settings(database_url, **overrides)) as svc:
        yield svc


async def add_user(service: Service, name: str, role: str, password: str = PASSWORD) -> None:
    async with session_factory(service.engine)() as session:
        await store.add(session, name, role, password, actor="test")
        await session.commit()


def csrf_of(html: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def browser(service: Service) -> httpx.AsyncClient:
    """A client that keeps cookies and does not follow redirects (tests look at them)."""
    return httpx.AsyncClient(base_url=service.base_url, timeout=30, headers={"accept": "text/html"})


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    token = csrf_of(page.text)
    return await client.post(
        "/login", data={"name": name, "password": password, "_csrf_token": token, "next": "/"}
    )


@asynccontextmanager
async def signed_in(service: Service, name: str, role: str) -> AsyncIterator[httpx.AsyncClient]:
    await add_user(service, name, role)
    async with browser(service) as client:
        resp = await sign_in(client, name)
        assert resp.status_code == 303, resp.text
        yield client


async def insert(service: Service, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows straight into a table: states the pages show that a test cannot wait for."""
    # One statement takes its columns from the first row: give every row every key.
    keys = {key for row in rows for key in row}
    async with service.engine.begin() as conn:
        await conn.execute(Base.metadata.tables[table].insert(), [dict.fromkeys(keys) | r for r in rows])


def failed_send(to: str, error: str, flow: str | None = None) -> dict[str, Any]:
    row = outbox_row(to=to, text="Dziękujemy", from_number="70120", flow=None, inbound_id=None, now=utcnow())
    return row | {"status": "failed", "last_error": error, "attempts": 1, "flow_id": flow}


def inbound(
    text: str, *, sender: str = "48600123456", status: str = "received", **extra: Any
) -> dict[str, Any]:
    msg = MoMessage(sms_id=secrets.token_hex(16), number="70120", sender=sender, text=text, time=1764540000)
    row = message_row(
        msg, raw_body=b"text=" + text.encode(), charset="utf-8", client_ip="127.0.0.1", received_at=utcnow()
    )
    return row | {"status": status, **extra}


def no_funds(to: str) -> str:
    return f"Mobitex refused the message to {to}: status 202 (no funds on the account); top up the account"
