"""The users page: admins add, change and disable users; every change is in the audit log; roles
decide who sees which page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_flows
from tests.dashboard import add_user, browser, csrf_of, dashboard_service, sign_in, signed_in
from tests.test_dashboard_pages import VOTE

# Every page, and the least role that may open it.
PAGES = {
    "/": "viewer",
    "/overview/figures": "viewer",
    "/flows": "viewer",
    "/flows/final": "viewer",
    "/flows/final/tally": "viewer",
    "/draws": "viewer",
    "/flows/final/draws/new": "operator",
    "/audit": "operator",
    "/users": "admin",
}
ORDER = ["viewer", "operator", "admin"]


@pytest.mark.parametrize("role", ORDER)
async def test_each_role_opens_exactly_the_pages_it_may(role: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    database = f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"
    async with (
        dashboard_service(database, flows_dir=str(flows)) as svc,
        signed_in(svc, "someone", role) as client,
    ):
        for path, needed in PAGES.items():
            resp = await client.get(path)
            allowed = ORDER.index(role) >= ORDER.index(needed)
            assert resp.status_code == (200 if allowed else 403), (path, role, resp.status_code)


async def test_an_admin_adds_a_user_who_can_then_sign_in(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as admin:
        page = await admin.get("/users")
        token = csrf_of(page.text)
        added = await admin.post(
            "/users",
            data={"name": "marek", "role": "operator", "password": "marek's password", "_csrf_token": token},
        )
        assert added.status_code == 303
        done = await admin.get(added.headers["location"])
        assert "User marek added" in done.text
        async with browser(svc) as marek:
            assert (await sign_in(marek, "marek", "marek's password")).status_code == 303
            assert (await marek.get("/audit")).status_code == 200  # an operator
        actor, action, target, client = (
            await svc.rows(
                "SELECT actor, action, target, client FROM audit_log"
                " WHERE action = 'users.add' AND actor = 'anna'"
            )
        )[0]
        assert (actor, action, target, client) == ("anna", "users.add", "marek", "127.0.0.1")


async def test_an_admin_changes_a_role_and_disables_a_user(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as admin:
        await add_user(svc, "piotr", "viewer")
        async with browser(svc) as piotr:
            assert (await sign_in(piotr, "piotr")).status_code == 303
            token = csrf_of((await admin.get("/users")).text)
            role = await admin.post("/users/piotr/role", data={"role": "operator", "_csrf_token": token})
            assert role.status_code == 303
            assert (await piotr.get("/audit")).status_code == 200  # the new role holds at once
            off = await admin.post("/users/piotr/disable", data={"_csrf_token": token})
            assert off.status_code == 303
            assert "piotr is disabled" in (await admin.get(off.headers["location"])).text
            assert (await piotr.get("/")).status_code == 303  # signed out everywhere
        actions = [
            r[0] for r in await svc.rows("SELECT action FROM audit_log WHERE target = 'piotr' ORDER BY id")
        ]
        assert actions[-2:] == ["users.role", "users.disable"]


async def test_users_forms_refuse_mistakes_missing_csrf_and_lower_roles(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as admin:
        token = csrf_of((await admin.get("/users")).text)
        short = await admin.post(
            "/users", data={"name": "x", "role": "viewer", "password": "short", "_csrf_token": token}
        )
        assert short.status_code == 400 and "at least 8 characters" in short.text
        myself = await admin.post("/users/anna/disable", data={"_csrf_token": token})
        assert myself.status_code == 400 and "You cannot disable yourself" in myself.text
        nobody = await admin.post("/users/nobody/disable", data={"_csrf_token": token})
        assert nobody.status_code == 400 and "no user named" in nobody.text
        no_csrf = await admin.post("/users", data={"name": "y", "role": "viewer", "password": "long enough"})
        assert no_csrf.status_code == 403
        async with signed_in(svc, "olek", "operator") as operator:
            token = csrf_of((await operator.get("/")).text)
            refused = await operator.post(
                "/users", data={"name": "z", "role": "admin", "password": "long enough", "_csrf_token": token}
            )
            assert refused.status_code == 403
        assert await svc.scalar("SELECT count(*) FROM users") == 2


async def test_an_admin_sets_a_new_password_which_ends_the_users_sessions(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "ada", "admin") as admin:
        async with signed_in(svc, "piotr", "operator") as piotr:
            token = csrf_of((await admin.get("/users")).text)
            short = await admin.post(
                "/users/piotr/password", data={"_csrf_token": token, "password": "short"}
            )
            assert short.status_code == 400 and "too short" in short.text
            done = await admin.post(
                "/users/piotr/password", data={"_csrf_token": token, "password": "a new long one"}
            )
            assert done.status_code == 303
            assert "The password of piotr was changed" in (await admin.get(done.headers["location"])).text
            assert (await piotr.get("/")).status_code == 303  # his session ended
            assert (await sign_in(piotr, "piotr")).status_code == 401
            assert (await sign_in(piotr, "piotr", "a new long one")).status_code == 303
            refused = await admin.post("/users/piotr/password", data={"password": "another long one"})
            assert refused.status_code == 403  # no CSRF token
        entry = await svc.rows("SELECT actor, client FROM audit_log WHERE action = 'users.passwd'")
        assert [(e.actor, e.client) for e in entry] == [("ada", "127.0.0.1")]
