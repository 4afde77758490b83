"""The users page: admins add, disable, re-role and re-password users, all audited."""

from __future__ import annotations

from tests.dashboard import PASSWORD, browser, csrf_of, dashboard_service, sign_in, signed_in


async def test_an_admin_adds_a_user_who_can_then_sign_in(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "ada", "admin") as admin:
        page = await admin.get("/users")
        assert page.status_code == 200 and "ada" in page.text
        token = csrf_of(page.text)
        short = await admin.post(
            "/users", data={"_csrf_token": token, "name": "ola", "role": "viewer", "password": "x"}
        )
        assert short.status_code == 400 and "too short" in short.text
        done = await admin.post(
            "/users", data={"_csrf_token": token, "name": "ola", "role": "operator", "password": PASSWORD}
        )
        assert done.status_code == 303
        assert "User ola was added." in (await admin.get(done.headers["location"])).text
        async with browser(svc) as ola:
            assert (await sign_in(ola, "ola")).status_code == 303
        entry = await svc.rows(
            "SELECT actor, target, client FROM audit_log WHERE action = 'users.add' AND target = 'ola'"
        )
        assert [(e.actor, e.target, e.client) for e in entry] == [("ada", "ola", "127.0.0.1")]


async def test_disabling_a_user_ends_their_session_and_roles_change(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "ada", "admin") as admin:
        async with signed_in(svc, "piotr", "operator") as piotr:
            assert (await piotr.get("/simulator")).status_code == 200
            token = csrf_of((await admin.get("/users")).text)
            role = await admin.post("/users/piotr/role", data={"_csrf_token": token, "role": "viewer"})
            assert "User piotr is now viewer." in (await admin.get(role.headers["location"])).text
            assert (await piotr.get("/simulator")).status_code == 403  # the new role holds at once
            off = await admin.post("/users/piotr/active", data={"_csrf_token": token, "active": "0"})
            assert "User piotr is disabled" in (await admin.get(off.headers["location"])).text
            assert (await piotr.get("/")).status_code == 303  # signed out
            await admin.post("/users/piotr/active", data={"_csrf_token": token, "active": "1"})
            pw = await admin.post(
                "/users/piotr/password", data={"_csrf_token": token, "password": "a new long one"}
            )
            assert pw.status_code == 303
            assert (await sign_in(piotr, "piotr", "a new long one")).status_code == 303
        actions = await svc.rows(
            "SELECT action FROM audit_log WHERE target = 'piotr' AND actor = 'ada' ORDER BY id"
        )
        assert [a.action for a in actions] == ["users.role", "users.disable", "users.enable", "users.passwd"]


async def test_an_admin_cannot_lock_themselves_out(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "ada", "admin") as admin:
        token = csrf_of((await admin.get("/users")).text)
        off = await admin.post("/users/ada/active", data={"_csrf_token": token, "active": "0"})
        assert off.status_code == 400 and "You cannot disable yourself" in off.text
        demote = await admin.post("/users/ada/role", data={"_csrf_token": token, "role": "viewer"})
        assert demote.status_code == 400
        assert (await admin.get("/users")).status_code == 200


async def test_only_admins_manage_users_and_forms_need_the_csrf_token(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        async with signed_in(svc, "olek", "operator") as operator:
            assert (await operator.get("/users")).status_code == 403
            assert 'href="/users"' not in (await operator.get("/")).text
            refused = await operator.post("/users", data={"name": "x", "role": "admin", "password": PASSWORD})
            assert refused.status_code == 403
        async with signed_in(svc, "ada", "admin") as admin:
            assert 'href="/users"' in (await admin.get("/")).text
            no_token = await admin.post("/users", data={"name": "eve", "role": "admin", "password": PASSWORD})
            assert no_token.status_code == 403
            token = csrf_of((await admin.get("/users")).text)
            html = await admin.post(
                "/users",
                data={
                    "_csrf_token": token,
                    "name": "<script>alert(1)</script>",
                    "role": "viewer",
                    "password": PASSWORD,
                },
            )
            assert html.status_code == 303
            listed = (await admin.get("/users")).text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed and "<script>alert" not in listed
        assert await svc.scalar("SELECT count(*) FROM users WHERE name = 'eve' OR name = 'x'") == 0
