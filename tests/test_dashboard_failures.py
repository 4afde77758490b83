"""Quarantine and failures: repair and re-ingest, discard, replay one or a flow's all, requeue in bulk."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import mo_form, write_flows
from tests.dashboard import csrf_of, dashboard_service, failed_send, inbound, insert, no_funds, signed_in

INFO = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO"]

[replies]
reply = "Odpowiedź na INFO"
"""


async def test_a_quarantined_request_is_repaired_re_ingested_and_answered(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        form = mo_form(sender="not-a-phone", text="INFO <script>alert(1)</script>")
        async with httpx.AsyncClient() as mobitex:
            assert (await mobitex.post(svc.mo_url, data=form)).text.strip() == "OK quarantined"
        qid = await svc.scalar("SELECT id FROM quarantine")
        async with signed_in(svc, "olek", "operator") as client:
            page = await client.get("/failures")
            assert page.status_code == 200
            assert "not-a-phone" in page.text and f'href="/failures/quarantine/{qid}"' in page.text
            assert "<script>alert(1)" not in page.text
            export = await client.get("/failures/quarantine.csv")
            assert export.headers["content-type"].startswith("text/csv")
            assert "not-a-phone" in export.text and export.text.count("\n") == 2  # header and the request
            repair = await client.get(f"/failures/quarantine/{qid}")
            assert 'name="sender" value="not-a-phone"' in repair.text
            fields = {k: form[k] for k in ("number", "text", "sms_id", "smcsc", "time", "ext_id")}
            token = csrf_of(repair.text)
            still_bad = await client.post(
                f"/failures/quarantine/{qid}/reingest", data={"_csrf_token": token, **fields, "sender": "x"}
            )
            assert still_bad.status_code == 400 and "Not re-ingested" in still_bad.text
            done = await client.post(
                f"/failures/quarantine/{qid}/reingest",
                data={"_csrf_token": token, **fields, "sender": "600123456"},
            )
            assert done.status_code == 303 and done.headers["location"].startswith("/failures?done=")
            after = await client.get(done.headers["location"])
            assert f"Request {qid} was re-ingested as message {form['sms_id']}" in after.text
            assert await svc.scalar("SELECT status FROM quarantine") == "reingested"
            stored = await svc.rows("SELECT sender, status, flow_id FROM inbound_messages")
            assert [tuple(r) for r in stored] == [("48600123456", "processed", "info")]
            assert await svc.scalar("SELECT text FROM outbox") == "Odpowiedź na INFO"
            again = await client.post(
                f"/failures/quarantine/{qid}/reingest",
                data={"_csrf_token": token, **fields, "sender": "600123456"},
            )
            assert again.status_code == 409 and "already reingested" in again.text
            audit = await svc.rows(
                "SELECT actor, target, detail FROM audit_log WHERE action = 'quarantine.reingest'"
            )
            assert [(a.actor, a.target) for a in audit] == [("olek", str(qid))]


async def test_discarding_asks_first_and_is_audited(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        async with httpx.AsyncClient() as mobitex:
            await mobitex.post(svc.mo_url, data=mo_form(time="yesterday"))
        qid = await svc.scalar("SELECT id FROM quarantine")
        async with signed_in(svc, "olek", "operator") as client:
            ask = await client.get(f"/failures/quarantine/{qid}", params={"confirm": "discard"})
            assert f"Discard request {qid}?" in ask.text
            assert await svc.scalar("SELECT status FROM quarantine") == "held"  # asking changes nothing
            done = await client.post(
                f"/failures/quarantine/{qid}/discard", data={"_csrf_token": csrf_of(ask.text)}
            )
            assert done.status_code == 303
            assert f"Request {qid} was discarded." in (await client.get(done.headers["location"])).text
            assert await svc.scalar("SELECT status FROM quarantine") == "discarded"
            assert await svc.scalar("SELECT count(*) FROM audit_log WHERE action = 'quarantine.discard'") == 1


async def test_failed_messages_are_replayed_one_by_one_or_by_flow(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", info=INFO)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        rows = [inbound("INFO", status="failed", flow_id="info", error="boom") for _ in range(3)]
        await insert(svc, "inbound_messages", rows)
        async with signed_in(svc, "olek", "operator") as client:
            page = await client.get("/failures")
            token = csrf_of(page.text)
            assert "boom" in page.text and "/failures/replay?flow=info" in page.text
            one = await client.post(
                f"/failures/inbound/{rows[0]['sms_id']}/replay", data={"_csrf_token": token}
            )
            assert one.status_code == 303
            assert "it is now processed" in (await client.get(one.headers["location"])).text
            twice = await client.post(
                f"/failures/inbound/{rows[0]['sms_id']}/replay", data={"_csrf_token": token}
            )
            assert twice.status_code == 409 and "is processed" in twice.text
            ask = await client.get("/failures/replay", params={"flow": "info"})
            assert "2 failed message(s) of info" in ask.text
            assert await svc.scalar("SELECT count(*) FROM inbound_messages WHERE status = 'failed'") == 2
            done = await client.post("/failures/replay", data={"_csrf_token": token, "flow": "info"})
            assert "2 message(s) replayed." in (await client.get(done.headers["location"])).text
            assert await svc.scalar("SELECT count(*) FROM inbound_messages WHERE status = 'processed'") == 3
            assert await svc.scalar("SELECT count(*) FROM outbox") == 3
            actions = await svc.rows("SELECT action FROM audit_log WHERE action LIKE 'inbound.%' ORDER BY id")
            assert [a.action for a in actions] == ["inbound.replay", "inbound.replay_flow"]


async def test_failed_sends_are_requeued_in_bulk_after_confirming_how_many(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        phones = [f"4860000000{i}" for i in range(4)]
        rows = [failed_send(p, no_funds(p)) for p in phones] + [
            failed_send("48600999999", "gave up after 9 attempts")
        ]
        await insert(svc, "outbox", rows)
        async with signed_in(svc, "olek", "operator") as client:
            page = await client.get("/failures")
            assert "status 202" in page.text and "/failures/requeue?error=status%20202" in page.text
            ask = await client.get("/failures/requeue", params={"error": "status 202"})
            assert "4 failed send(s) whose error contains “status 202”" in ask.text
            done = await client.post(
                "/failures/requeue", data={"_csrf_token": csrf_of(ask.text), "error": "status 202"}
            )
            assert "4 failed send(s) are queued again." in (await client.get(done.headers["location"])).text
            statuses = await svc.rows(
                "SELECT status, count(*) AS n FROM outbox GROUP BY status ORDER BY status"
            )
            assert [tuple(r) for r in statuses] == [("failed", 1), ("queued", 4)]
            assert await svc.scalar("SELECT max(attempts) FROM outbox WHERE status = 'queued'") == 0
            detail = await svc.scalar("SELECT detail FROM audit_log WHERE action = 'outbox.requeue'")
            assert '"count":4' in detail


async def test_only_operators_see_failures_and_actions_need_the_csrf_token(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await insert(svc, "outbox", [failed_send("48600000001", no_funds("48600000001"))])
        async with signed_in(svc, "vera", "viewer") as viewer:
            assert (await viewer.get("/failures")).status_code == 403
            assert (await viewer.get("/failures/requeue")).status_code == 403
        async with signed_in(svc, "olek", "operator") as operator:
            refused = await operator.post("/failures/requeue", data={"error": "status 202"})
            assert refused.status_code == 403
            assert await svc.scalar("SELECT status FROM outbox") == "failed"


async def test_errors_answer_with_their_own_status_and_say_what_to_do(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        async with httpx.AsyncClient() as mobitex:
            await mobitex.post(svc.mo_url, data=mo_form(sender="nobody"))
        qid = await svc.scalar("SELECT id FROM quarantine")
        async with signed_in(svc, "olek", "operator") as client:
            token = csrf_of((await client.get(f"/failures/quarantine/{qid}")).text)
            for action in ("reingest", "discard"):
                missing = await client.post(f"/failures/quarantine/999/{action}", data={"_csrf_token": token})
                assert missing.status_code == 404, action
                assert "no quarantined request 999" in missing.text
                assert "Check the address, or start again from the overview." in missing.text
            for page in ("/flows/nothing", "/messages/in/nosuchmessage", "/messages/out/999"):
                unknown = await client.get(page)
                assert unknown.status_code == 404 and "Page not found" in unknown.text, page
            done = await client.post(f"/failures/quarantine/{qid}/discard", data={"_csrf_token": token})
            assert done.status_code == 303
            for action in ("reingest", "discard"):
                again = await client.post(f"/failures/quarantine/{qid}/{action}", data={"_csrf_token": token})
                assert again.status_code == 409, action
                assert f"quarantined request {qid} is already discarded" in again.text
                assert "That was done already, or changed meanwhile" in again.text
                assert "Open the page again to see how things stand now." in again.text
            client.cookies.set("smsflows_lang", "pl")
            polish = await client.post(f"/failures/quarantine/{qid}/discard", data={"_csrf_token": token})
            assert polish.status_code == 409
            assert "To już zrobiono albo w międzyczasie się zmieniło" in polish.text
