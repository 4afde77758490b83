"""Helpers for dashboard tests: users in the database, a browser-like client that signs in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.db import users as store
from app.db.engine import session_factory
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
