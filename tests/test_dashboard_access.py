"""Who may see what: signing in and out, roles, CSRF, revoked and expired sessions, limits, headers."""

from __future__ import annotations

import time

from litestar.middleware.session.client_side import ClientSideSessionBackend

from app.dashboard.auth import SESSION_COOKIE, session_config
from app.db import users as store
from app.db.engine import session_factory
from tests.dashboard import (
    PASSWORD,
    add_user,
    browser,
    csrf_of,
    dashboard_service,
    sign_in,
    signed_in,
)


async def test_overview_sends_a_stranger_to_the_sign_in_page_and_back(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await add_user(svc, "anna", "viewer")
        async with browser(svc) as client:
            resp = await client.get("/audit?action=users.")
            assert resp.status_code == 303
            assert resp.headers["location"] == "/login?next=/audit%3Faction%3Dusers."
            page = await client.get(resp.headers["location"])
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert 'name="next" value="/audit?action=users."' in page.text
            signed = await client.post(
                "/login",
                data={"name": "anna", "password": PASSWORD, "_csrf_token": csrf_of(page.text), "next": "/"},
            )
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            overview = await client.get("/")
            assert overview.status_code == 200
            assert "Received today" in overview.text and "anna" in overview.text


async def test_wrong_password_is_refused_and_the_sixth_try_is_rate_limited(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await add_user(svc, "anna", "admin")
        async with browser(svc) as client:
            for _ in range(5):
                resp = await sign_in(client, "anna", "wrong password")
                assert resp.status_code == 401
                assert "Wrong name or password." in resp.text
            limited = await sign_in(client, "anna", PASSWORD)  # even the right password waits
            assert limited.status_code == 429
            assert "Too many failed sign-ins" in limited.text
            assert SESSION_COOKIE not in client.cookies
        # The count lives in the database: another client (or worker) sees the same limit.
        async with browser(svc) as other:
            assert (await sign_in(other, "anna", PASSWORD)).status_code == 429


async def test_a_viewer_may_not_open_the_audit_log(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "vera", "viewer") as client:
        resp = await client.get("/audit")
        assert resp.status_code == 403
        assert "operator role or above" in resp.text
        assert "Traceback" not in resp.text
        assert 'href="/audit"' not in resp.text  # the navigation does not offer it either


async def test_an_operator_sees_sign_ins_in_the_audit_log(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        resp = await client.get("/audit")
        assert resp.status_code == 200
        assert "session.login" in resp.text and "users.add" in resp.text
        only_users = await client.get("/audit", params={"action": "users."})
        assert "users.add" in only_users.text and "session.login" not in only_users.text


async def test_a_form_without_or_with_a_wrong_csrf_token_is_refused(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as client:
        missing = await client.post("/logout")
        assert missing.status_code == 403
        assert "The form had expired" in missing.text
        wrong = await client.post("/logout", data={"_csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert (await client.get("/")).status_code == 200  # still signed in


async def test_sign_in_without_a_csrf_token_is_refused(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await add_user(svc, "anna", "admin")
        async with browser(svc) as client:
            resp = await client.post("/login", data={"name": "anna", "password": PASSWORD})
            assert resp.status_code == 403


async def test_sign_out_ends_the_session(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as client:
        page = await client.get("/")
        out = await client.post("/logout", data={"_csrf_token": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await client.get("/")).status_code == 303
        assert await svc.scalar("SELECT count(*) FROM audit_log WHERE action = 'session.logout'") == 1


async def test_disabling_a_user_ends_their_open_session(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "piotr", "operator") as client:
        assert (await client.get("/")).status_code == 200
        async with session_factory(svc.engine)() as session:
            await store.set_active(session, "piotr", False, actor="test")
            await session.commit()
        resp = await client.get("/")
        assert resp.status_code == 303
        login = await client.get(resp.headers["location"])
        assert "Your session was ended" in login.text
        assert (await sign_in(client, "piotr")).status_code == 401


async def test_a_password_change_ends_sessions_and_the_new_password_works(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as client:
        async with session_factory(svc.engine)() as session:
            await store.set_password(session, "anna", "a new long password", actor="test")
            await session.commit()
        assert (await client.get("/")).status_code == 303
        assert (await sign_in(client, "anna")).status_code == 401
        assert (await sign_in(client, "anna", "a new long password")).status_code == 303


async def test_an_expired_session_cookie_is_not_accepted(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await add_user(svc, "anna", "admin")
        user_id = await svc.scalar("SELECT id FROM users WHERE name = 'anna'")
        # A genuine cookie, signed with the service's key, whose expiry has passed.
        backend = ClientSideSessionBackend(session_config(svc.settings))
        stale = {"uid": user_id, "ver": 1, "exp": int(time.time()) - 60}
        value = backend.dump_data(stale)[0].decode()
        async with browser(svc) as client:
            client.cookies.set(SESSION_COOKIE, value)
            resp = await client.get("/")
            assert resp.status_code == 303
            login = await client.get(resp.headers["location"])
            assert "Your session has expired" in login.text
            # The same cookie with time left works: the expiry alone made the difference.
            fresh = backend.dump_data({**stale, "exp": int(time.time()) + 600})[0].decode()
            client.cookies.clear()
            client.cookies.set(SESSION_COOKIE, fresh)
            assert (await client.get("/")).status_code == 200


async def test_pages_carry_security_headers(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, browser(svc) as client:
        resp = await client.get("/login")
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in resp.text  # no inline script: only <script src=...>
        cookie = resp.headers.get_list("set-cookie")
        assert any("smsflows_csrf=" in c and "HttpOnly" in c for c in cookie)


async def test_the_dashboard_is_off_without_a_session_secret(database_url: str) -> None:
    async with dashboard_service(database_url, session_secret="") as svc, browser(svc) as client:
        resp = await client.get("/")
        assert resp.status_code == 503
        assert "SMSFLOWS_SESSION_SECRET" in resp.text
        assert (await client.get("/login")).status_code == 503


async def test_unknown_addresses_get_a_page_for_people_and_json_for_the_api(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, browser(svc) as client:
        page = await client.get("/no-such-page")
        assert page.status_code == 404
        assert "There is no page at this address." in page.text
        api = await client.get("/api/no-such-thing", headers={"accept": "application/json"})
        assert api.status_code == 404
        assert api.headers["content-type"].startswith("application/json")


async def test_sign_in_goes_back_only_to_pages_of_this_site(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await add_user(svc, "anna", "admin")
        async with browser(svc) as client:
            page = await client.get("/login", params={"next": "//evil.example/"})
            resp = await client.post(
                "/login",
                data={
                    "name": "anna",
                    "password": PASSWORD,
                    "_csrf_token": csrf_of(page.text),
                    "next": "//evil.example/",
                },
            )
            assert resp.headers["location"] == "/"


async def test_a_refreshing_part_of_a_page_sends_the_whole_page_to_sign_in(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, browser(svc) as client:
        resp = await client.get("/overview/figures", headers={"HX-Request": "true"})
        assert resp.status_code == 200
        assert resp.headers["hx-redirect"] == "/login?next=/overview/figures"
