"""Messages and contacts: filters in the address, older/newer pages, exports of exactly what the
filters show (formula cells neutralised), message pages with their links, a contact's thread."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from app.dashboard.auth import SignedIn
from app.dashboard.exports import cell
from app.dashboard.phones import shown_phone
from app.db.models import utcnow
from tests.dashboard import csrf_of, dashboard_service, failed_send, inbound, insert, signed_in

HOSTILE = ["<script>alert(1)</script>", '"><img onerror=x>']


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_cells_that_would_start_a_formula_are_neutralised() -> None:
    # The dashboard's exports use the product's one CSV cell rule: formulas become text, while
    # plain numbers (a phone with its +, a negative count) stay numbers.
    assert [cell(v) for v in ("=1+1", "@SUM(A1)", "\tx", "\rx", "-1+2", "ok", "+48600123456", "-2")] == [
        "'=1+1", "'@SUM(A1)", "'\tx", "'\rx", "'-1+2", "ok", "+48600123456", "-2"
    ]  # fmt: skip
    assert cell(-5) == -5 and cell(None) == ""


def test_a_viewer_reads_numbers_masked_and_an_erased_one_as_erased() -> None:
    viewer, operator = SignedIn(1, "vera", "viewer"), SignedIn(2, "olek", "operator")
    assert shown_phone(viewer, "48600123456") == "48600***456"
    assert shown_phone(viewer, "p0123456789abcdef") == "(erased)"  # a pseudonym names nobody
    assert shown_phone(None, "48600123456") == "48600***456"
    assert shown_phone(operator, "48600123456") == "48600123456"
    assert shown_phone(operator, None) == shown_phone(viewer, "") == ""


async def test_filters_are_in_the_address_and_pages_go_older_and_newer(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "vera", "viewer") as client:
        rows = [inbound(f"GLOS {i}", sender="48600000001") for i in range(120)]
        rows += [inbound("INNE", sender="48600000002", status="failed", flow_id="final")]
        await insert(svc, "inbound_messages", rows)
        first = await client.get("/messages/in", params={"number": "600 000 001"})
        assert first.status_code == 200
        assert first.text.count('href="/messages/in/') == 50
        assert "GLOS 119" in first.text and "GLOS 69" not in first.text and "INNE" not in first.text
        assert "Newer" not in first.text
        older = first.text.split('href="/messages/in?')[-1].split('"')[0].replace("&amp;", "&")
        assert "before=" in older and "number=600+000+001" in older
        second = await client.get("/messages/in?" + older)
        assert "GLOS 69" in second.text and "GLOS 119" not in second.text and "Newer" in second.text
        newer = second.text.split('href="/messages/in?')[1].split('"')[0].replace("&amp;", "&")
        assert "after=" in newer
        back = await client.get("/messages/in?" + newer)
        assert "GLOS 119" in back.text and "GLOS 69" not in back.text
        only = await client.get("/messages/in", params={"status": "failed", "flow": "final", "text": "inn"})
        assert "INNE" in only.text and "GLOS" not in only.text
        tomorrow = (utcnow() + timedelta(days=2)).date().isoformat()
        none = await client.get("/messages/in", params={"since": tomorrow})
        assert "No message matches these filters." in none.text


async def test_the_export_holds_exactly_what_the_filters_show(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "vera", "viewer") as client:
        rows = [inbound(f"A{i}", sender="48600000001") for i in range(2100)]
        rows += [
            inbound('=HYPERLINK("http://x")', sender="48600000001"),
            inbound("other", sender="48600000002"),
        ]
        await insert(svc, "inbound_messages", rows)
        page = await client.get("/messages/in", params={"number": "48600000001"})
        assert 'href="/messages/in.csv?number=48600000001"' in page.text
        export = await client.get("/messages/in.csv", params={"number": "48600000001"})
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        table = _csv(export.text)
        assert table[0][:4] == ["id", "received_at", "sms_id", "sender"]
        assert len(table) == 1 + 2101  # three pages of the read, every row once
        assert {r[3] for r in table[1:]} == {"48600***001"}  # a viewer's export, masked as the page
        assert table[1][5] == '\'=HYPERLINK("http://x")'  # newest first, and neutralised
        out = await client.get("/messages/out.csv")
        assert _csv(out.text) == [list(_csv(out.text)[0])]  # only the header: nothing sent


async def test_a_message_page_shows_what_is_stored_and_links_both_ways(database_url: str) -> None:
    # An operator: the raw body holds the phone number, which viewers do not see.
    async with dashboard_service(database_url) as svc, signed_in(svc, "olek", "operator") as client:
        await insert(
            svc, "outbox", [failed_send("48600000001", "x") | {"status": "sent", "text": HOSTILE[0]}]
        )
        sent_id = await svc.scalar("SELECT id FROM outbox")
        answer = inbound(
            HOSTILE[1],
            sender="48600000001",
            status="processed",
            reply_to_id=sent_id,
            correlation="matched",
            ext_id="abc",
        )
        lost = inbound("TAK", sender="48600000001", status="ignored", correlation="unmatched", ext_id="nope")
        await insert(svc, "inbound_messages", [answer, lost])
        lost_id = await svc.scalar("SELECT id FROM inbound_messages WHERE ext_id = 'nope'")
        detail = '{"ext_id": "nope", "reason": "no message of ours has this ext_id", "outbox_id": null}'
        await insert(
            svc,
            "flow_events",
            [
                {
                    "inbound_id": lost_id,
                    "sender": "48600000001",
                    "outcome": "reply_unmatched",
                    "detail": detail,
                    "created_at": utcnow(),
                }
            ],
        )
        page = await client.get(f"/messages/in/{answer['sms_id']}")
        assert page.status_code == 200
        assert f'href="/messages/out/{sent_id}"' in page.text and "127.0.0.1" in page.text
        assert "text=&#34;&gt;&lt;img onerror=x&gt;" in page.text  # the raw body, as text
        assert "<img onerror" not in page.text and "<script>alert" not in page.text
        sent = await client.get(f"/messages/out/{sent_id}")
        assert f'href="/messages/in/{answer["sms_id"]}"' in sent.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sent.text
        unmatched = await client.get(f"/messages/in/{lost['sms_id']}")
        assert "unmatched" in unmatched.text and "no message of ours has this ext_id" in unmatched.text
        listed = await client.get("/messages/out")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text and "<script>alert" not in listed.text
        assert (await client.get("/messages/in/nosuchmessage")).status_code == 404


async def test_a_contact_shows_one_thread_and_an_operator_opts_it_out_and_in(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        phone = "48600000001"
        now = utcnow()
        await insert(svc, "inbound_messages", [inbound(HOSTILE[0], sender=phone, status="processed")])
        await insert(svc, "outbox", [failed_send(phone, "x") | {"status": "sent", "text": "Dzięki"}])
        await insert(svc, "contacts", [{"phone": phone, "first_seen": now, "last_seen": now, "messages": 1}])
        await insert(
            svc,
            "votes",
            [
                {
                    "flow_id": "final",
                    "flow_hash": "h",
                    "sender": phone,
                    "seq": 1,
                    "option": "A",
                    "inbound_id": 1,
                    "created_at": now,
                    "message_time": 1,
                }
            ],
        )
        async with signed_in(svc, "vera", "viewer") as viewer:
            found = await viewer.get("/contacts", params={"phone": "600 000 001"})
            assert found.status_code == 303 and found.headers["location"] == f"/contacts/{phone}"
            page = await viewer.get(found.headers["location"])
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "Dzięki" in page.text
            assert "final" in page.text and "may get messages" in page.text
            assert "Opt out…" not in page.text  # a viewer reads only
            assert (await viewer.get(f"/contacts/{phone}/optout")).status_code == 403
            prefix = await viewer.get("/contacts", params={"phone": "486000"})
            # A viewer finds the contact by the beginning of its number, and sees the rest masked.
            assert "48600***001" in prefix.text and phone not in prefix.text
            thread = _csv((await viewer.get(f"/contacts/{phone}.csv")).text)
            assert [r[0] for r in thread[1:]] == ["out", "in"]
        async with signed_in(svc, "olek", "operator") as operator:
            found = await operator.get("/contacts", params={"phone": "486000"})
            assert f'href="/contacts/{phone}"' in found.text
            ask = await operator.get(f"/contacts/{phone}/optout", params={"set": "out"})
            assert "broadcasts and sends skip it" in ask.text
            assert await svc.scalar("SELECT opted_out_at FROM contacts") is None  # asking changes nothing
            token = csrf_of(ask.text)
            assert (await operator.post(f"/contacts/{phone}/optout", data={"set": "out"})).status_code == 403
            done = await operator.post(f"/contacts/{phone}/optout", data={"_csrf_token": token, "set": "out"})
            assert done.status_code == 303
            page = await operator.get(done.headers["location"])
            assert f"{phone} is opted out" in page.text and "Opt back in…" in page.text
            assert await svc.scalar("SELECT opted_out_at FROM contacts") is not None
            back = await operator.post(f"/contacts/{phone}/optout", data={"_csrf_token": token, "set": "in"})
            assert f"{phone} is opted back in." in (await operator.get(back.headers["location"])).text
            assert await svc.scalar("SELECT opted_out_at FROM contacts") is None
        actions = await svc.rows(
            "SELECT action, actor, target FROM audit_log WHERE action LIKE 'contacts.%' ORDER BY id"
        )
        assert [tuple(a) for a in actions] == [
            ("contacts.optout", "olek", phone),
            ("contacts.optin", "olek", phone),
        ]


async def test_messages_and_contacts_need_a_sign_in(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "vera", "viewer") as viewer:
        assert (await viewer.get("/messages")).status_code == 303
        for path in ("/messages/in", "/messages/out", "/contacts"):
            assert (await viewer.get(path)).status_code == 200
        viewer.cookies.clear()
        for path in ("/messages/in", "/messages/in.csv", "/contacts/48600000001"):
            assert (await viewer.get(path)).status_code == 303


async def test_a_viewer_reads_messages_with_numbers_masked_and_an_operator_whole(database_url: str) -> None:
    async with dashboard_service(database_url) as svc:
        await insert(svc, "inbound_messages", [inbound("GLOS A", sender="48600111222")])
        await insert(svc, "outbox", [failed_send("48600333444", "Dziękujemy")])
        sms_id = await svc.scalar("SELECT sms_id FROM inbound_messages")
        out_id = await svc.scalar("SELECT id FROM outbox")
        pages = ["/messages/in", f"/messages/in/{sms_id}", "/messages/out", f"/messages/out/{out_id}"]
        async with signed_in(svc, "vera", "viewer") as viewer:
            for page in pages:
                html = (await viewer.get(page)).text
                assert "48600111222" not in html and "48600333444" not in html, page
            listed = (await viewer.get("/messages/in")).text
            assert "48600***222" in listed and 'href="/contacts/' not in listed
        async with signed_in(svc, "olek", "operator") as operator:
            listed = (await operator.get("/messages/in")).text
            assert 'href="/contacts/48600111222"' in listed
            assert "48600333444" in (await operator.get(f"/messages/out/{out_id}")).text


async def test_exports_mask_numbers_for_a_viewer_as_the_pages_do_and_show_them_whole_to_others(
    database_url: str,
) -> None:
    async with dashboard_service(database_url) as svc:
        await insert(svc, "inbound_messages", [inbound("GLOS A", sender="48600111222")])
        await insert(svc, "outbox", [failed_send("48600333444", "Dziękujemy")])
        for name, role, sender, to in (
            ("vera", "viewer", "48600***222", "48600***444"),
            ("olek", "operator", "48600111222", "48600333444"),
            ("ada", "admin", "48600111222", "48600333444"),
        ):
            async with signed_in(svc, name, role) as client:
                listed = (await client.get("/messages/in")).text
                assert sender in listed, role  # the page and its export agree
                # Only the phone's number is masked; ours (the short code) reads whole.
                received = dict(zip(*_csv((await client.get("/messages/in.csv")).text), strict=True))
                assert (received["sender"], received["number"]) == (sender, "70120"), role
                sent = dict(zip(*_csv((await client.get("/messages/out.csv")).text), strict=True))
                assert (sent["to_number"], sent["from_number"]) == (to, "70120"), role
                thread = (await client.get("/contacts/48600111222.csv")).text
                assert "GLOS A" in thread and "48600111222" not in thread, role
                quarantine = await client.get("/failures/quarantine.csv")
                assert quarantine.status_code == (403 if role == "viewer" else 200), role
