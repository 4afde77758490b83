"""Sending from the dashboard: preview (encoding, parts, recipients after opt-outs), confirm, once."""

from __future__ import annotations

import re

from app.db.models import utcnow
from tests.dashboard import csrf_of, dashboard_service, insert, signed_in


def _member(phone: str, status: str = "active") -> dict[str, object]:
    now = utcnow()
    return {
        "list_id": "nowosci", "phone": phone, "status": status, "flow_id": "nowosci", "flow_hash": "h",
        "requested_at": now, "confirmed_at": now,
    }  # fmt: skip


async def test_one_number_is_previewed_confirmed_and_a_double_submit_queues_it_once(
    database_url: str,
) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        form = await client.get("/send")
        assert form.status_code == 200
        preview = await client.get(
            "/send/preview", params={"to": "600 123 456", "list": "", "text": "Zażółć"}
        )
        assert preview.status_code == 200
        assert "To 48600123456" in preview.text and "UCS-2" in preview.text
        assert await svc.scalar("SELECT count(*) FROM outbox") == 0  # the preview queues nothing
        fields = {
            name: value
            for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview.text)
        }
        first = await client.post("/send", data=fields)
        second = await client.post("/send", data=fields)  # the same confirmation, sent twice
        assert first.status_code == second.status_code == 303
        assert await svc.scalar("SELECT count(*) FROM outbox") == 1
        row = (await svc.rows("SELECT to_number, text, encoding, status FROM outbox"))[0]
        assert tuple(row) == ("48600123456", "Zażółć", "ucs2", "queued")
        assert "The message to 48600123456 is queued" in (await client.get(first.headers["location"])).text
        assert "had been queued already" in (await client.get(second.headers["location"])).text
        assert await svc.scalar("SELECT count(*) FROM audit_log WHERE action = 'send.one'") == 2


async def test_a_list_preview_counts_recipients_after_opt_outs_and_sends_to_them(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        phones = ["48600000001", "48600000002", "48600000003"]
        await insert(svc, "subscriptions", [_member(p) for p in phones] + [_member("48600000009", "left")])
        now = utcnow()
        await insert(
            svc,
            "contacts",
            [{"phone": phones[2], "first_seen": now, "last_seen": now, "messages": 1, "opted_out_at": now}],
        )
        assert 'value="nowosci"' in (await client.get("/send")).text
        preview = await client.get("/send/preview", params={"to": "", "list": "nowosci", "text": "A" * 200})
        assert "2 recipient(s) on list nowosci" in preview.text and "1 opted out, skipped" in preview.text
        assert "GSM-7" in preview.text and "<strong>4</strong>" in preview.text  # 2 parts each
        assert "Send to 2 recipient(s)" in preview.text
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview.text))
        await client.post("/send", data=fields)
        done = await client.post("/send", data=fields)
        page = await client.get(done.headers["location"])
        assert "0 message(s) queued to list nowosci; 2 had been queued already" in page.text
        sent = await svc.rows("SELECT to_number FROM outbox ORDER BY to_number")
        assert [r.to_number for r in sent] == phones[:2]


async def test_what_cannot_be_sent_is_said_on_the_form(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        bad = await client.get("/send/preview", params={"to": "12", "list": "", "text": "Hej"})
        assert bad.status_code == 400 and "is not a phone number" in bad.text
        long = await client.get("/send/preview", params={"to": "48600123456", "list": "", "text": "ż" * 300})
        assert long.status_code == 400 and "UCS-2" in long.text
        empty = await client.get("/send/preview", params={"to": "", "list": "nikt", "text": "Hej"})
        assert empty.status_code == 400 and "has no active member" in empty.text
        html = await client.get(
            "/send/preview", params={"to": "48600123456", "list": "", "text": '"><img onerror=x>'}
        )
        assert "&#34;&gt;&lt;img onerror=x&gt;" in html.text and "<img onerror" not in html.text


async def test_only_operators_send_and_the_send_needs_the_csrf_token(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        async with signed_in(svc, "vera", "viewer") as viewer:
            assert (await viewer.get("/send")).status_code == 403
            assert (
                await viewer.get("/send/preview", params={"to": "48600123456", "text": "x"})
            ).status_code == 403
        async with signed_in(svc, "olek", "operator") as operator:
            form = await operator.get("/send")
            assert csrf_of(form.text)
            refused = await operator.post("/send", data={"to": "48600123456", "text": "x", "key": "k"})
            assert refused.status_code == 403
        assert await svc.scalar("SELECT count(*) FROM outbox") == 0
