"""The MO webhook over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, urlencode

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.db.engine import create_engine
from app.errors import DatabaseBusy
from app.ingest import webhook
from tests.conftest import Service, _pg_dsn, make_settings, mo_form, running, start_service

FORM = "application/x-www-form-urlencoded"


def _count(metrics: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", metrics, re.M)
    return float(found[1]) if found else 0.0


async def test_valid_message_is_stored_with_every_field(service: Service) -> None:
    form = mo_form(text="Głosuję na A", ext_id="a" * 32, sender="+48 600 123 456")
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=form)
    assert resp.status_code == 200
    assert resp.text.strip() == "OK"
    row = (
        await service.rows(
            "SELECT number, sender, text, smcsc, time, ext_id, deliveries, status, client_ip, charset "
            "FROM inbound_messages WHERE sms_id = :s",
            s=form["sms_id"],
        )
    )[0]
    assert tuple(row) == (
        "70120",
        "48600123456",
        "Głosuję na A",
        "48602951111",
        1764540000,
        "a" * 32,
        1,
        "ignored",  # no flows are loaded: stored, and nothing acted on it
        "127.0.0.1",
        "utf-8",
    )
    raw = await service.scalar("SELECT raw_body FROM inbound_messages WHERE sms_id = :s", s=form["sms_id"])
    assert b"sms_id=" + form["sms_id"].encode() in bytes(raw)


async def test_duplicate_sms_id_is_acknowledged_and_stored_once(service: Service) -> None:
    form = mo_form()
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            resp = await client.post(service.mo_url, data=form)
            assert resp.status_code == 200
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 1
    assert await service.scalar("SELECT deliveries FROM inbound_messages") == 3


async def test_fifty_concurrent_deliveries_of_one_sms_id_make_one_row(service: Service) -> None:
    form = mo_form()
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        answers = await asyncio.gather(*(client.post(service.mo_url, data=form) for _ in range(50)))
    assert [r.status_code for r in answers] == [200] * 50
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 1
    assert await service.scalar("SELECT deliveries FROM inbound_messages") == 50


async def test_many_concurrent_distinct_messages_are_all_stored(service: Service) -> None:
    forms = [mo_form(text=f"GLOS {i}") for i in range(200)]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=30) as client:
        answers = await asyncio.gather(*(client.post(service.mo_url, data=f) for f in forms))
    assert all(r.status_code == 200 for r in answers)
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 200
    stored = {r[0] for r in await service.rows("SELECT sms_id FROM inbound_messages")}
    assert stored == {f["sms_id"] for f in forms}


async def test_request_from_address_outside_allowlist_gets_403(service: Service) -> None:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport) as client:
        resp = await client.post(service.mo_url, data=mo_form())
    assert resp.status_code == 403
    assert "127.0.0.2" in resp.text
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 0
    assert await service.scalar("SELECT count(*) FROM quarantine") == 0


async def test_forged_forwarded_for_from_untrusted_peer_is_ignored(database_url: str) -> None:
    settings = make_settings(database_url, mo_allowed_ips="213.5.10.19")
    async with running(settings) as svc, httpx.AsyncClient() as client:
        resp = await client.post(svc.mo_url, data=mo_form(), headers={"X-Forwarded-For": "213.5.10.19"})
    assert resp.status_code == 403


async def test_forwarded_for_from_trusted_proxy_names_the_client(database_url: str) -> None:
    settings = make_settings(database_url, mo_allowed_ips="213.5.10.19", trusted_proxies="127.0.0.0/8")
    async with running(settings) as svc, httpx.AsyncClient() as client:
        ok = await client.post(
            svc.mo_url, data=mo_form(), headers={"X-Forwarded-For": "1.2.3.4, 213.5.10.19"}
        )
        forged = await client.post(
            svc.mo_url, data=mo_form(), headers={"X-Forwarded-For": "213.5.10.19, 1.2.3.4"}
        )
    assert ok.status_code == 200
    assert forged.status_code == 403


async def test_forwarded_for_on_several_header_lines_is_read_as_one_list(database_url: str) -> None:
    """A proxy that adds its own X-Forwarded-For line must not hide the hop it appended."""
    settings = make_settings(database_url, mo_allowed_ips="213.5.10.19", trusted_proxies="127.0.0.0/8")
    async with running(settings) as svc, httpx.AsyncClient() as client:
        forged = await client.post(
            svc.mo_url,
            data=mo_form(),
            headers=[("X-Forwarded-For", "213.5.10.19"), ("X-Forwarded-For", "203.0.113.9")],
        )
        ok = await client.post(
            svc.mo_url,
            data=mo_form(),
            headers=[("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "213.5.10.19")],
        )
    assert forged.status_code == 403
    assert "203.0.113.9" in forged.text
    assert ok.status_code == 200


async def test_polish_text_in_utf8_and_windows_1250_is_stored_identically(service: Service) -> None:
    text = "Zażółć gęślą jaźń ĄĆĘŁŃÓŚŹŻ"
    ids = {}
    async with httpx.AsyncClient() as client:
        for charset in ("utf-8", "cp1250", "iso-8859-2"):
            form = mo_form(text=text)
            body = "&".join(f"{k}={quote_from_bytes(v.encode(charset))}" for k, v in form.items())
            resp = await client.post(service.mo_url, content=body, headers={"Content-Type": FORM})
            assert resp.status_code == 200, resp.text
            ids[charset] = form["sms_id"]
    for charset, sms_id in ids.items():
        stored = await service.scalar("SELECT text FROM inbound_messages WHERE sms_id = :s", s=sms_id)
        assert stored == text, charset


async def test_multipart_form_is_accepted(service: Service) -> None:
    form = mo_form(text="Dzień dobry")
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, files={k: (None, v) for k, v in form.items()})
    assert resp.status_code == 200
    assert await service.scalar("SELECT text FROM inbound_messages WHERE sms_id = :s", s=form["sms_id"]) == (
        "Dzień dobry"
    )


def _multipart(parts: list[tuple[str, str]], boundary: str = "outer") -> bytes:
    """A multipart body from (headers, payload) pairs, written by hand to shape it freely."""
    out = b"".join(f"--{boundary}\r\n{headers}\r\n\r\n{payload}\r\n".encode() for headers, payload in parts)
    return out + f"--{boundary}--\r\n".encode()


async def test_multipart_with_more_parts_than_any_mo_form_is_refused_and_kept(service: Service) -> None:
    parts = [(f'Content-Disposition: form-data; name="f{i}"', "x") for i in range(1000)]
    body = _multipart(parts)
    assert len(body) < service.settings.mo_max_body
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            service.mo_url, content=body, headers={"Content-Type": "multipart/form-data; boundary=outer"}
        )
        health = await client.get(service.base_url + "/health")
    assert resp.status_code == 400
    assert "over 32 parts" in resp.text and "quarantine" in resp.text
    assert health.status_code == 200
    raw, reason = (await service.rows("SELECT raw_body, reason FROM quarantine"))[0]
    assert bytes(raw) == body
    assert "over 32 parts" in reason


async def test_nested_multipart_is_refused_and_kept_raw(service: Service) -> None:
    inner = _multipart([('Content-Disposition: form-data; name="text"', "GLOS A")] * 20, boundary="in")
    nested = [
        ('Content-Disposition: form-data; name="x"\r\nContent-Type: multipart/mixed; boundary=in', inner)
    ]
    body = _multipart([*nested * 3, ('Content-Disposition: form-data; name="number"', "70120")])
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            service.mo_url, content=body, headers={"Content-Type": "multipart/form-data; boundary=outer"}
        )
    assert resp.status_code == 400
    assert "nested multipart" in resp.text
    raw, reason = (await service.rows("SELECT raw_body, reason FROM quarantine"))[0]
    assert bytes(raw) == body
    assert "nested multipart" in reason
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 0


async def test_missing_optional_fields_and_empty_ext_id_are_fine(service: Service) -> None:
    form = mo_form()
    del form["smcsc"]
    del form["ext_id"]
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=form)
    assert resp.status_code == 200
    row = (await service.rows("SELECT smcsc, ext_id FROM inbound_messages"))[0]
    assert tuple(row) == (None, None)


async def test_invalid_request_is_quarantined_raw_and_answered_200(service: Service) -> None:
    body = b"number=70120&sender=abc&text=hello&sms_id=short&time=yesterday"
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, content=body, headers={"Content-Type": FORM})
    assert resp.status_code == 200
    assert "quarantined" in resp.text
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 0
    rows = await service.rows("SELECT raw_body, reason, status, client_ip FROM quarantine")
    assert len(rows) == 1
    raw, reason, status, ip = rows[0]
    assert bytes(raw) == body
    assert "sms_id" in reason or "sender" in reason
    assert (status, ip) == ("held", "127.0.0.1")


async def test_missing_fields_are_named_in_the_quarantine_reason(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data={"number": "70120", "text": "x"})
    assert resp.status_code == 200
    reason = await service.scalar("SELECT reason FROM quarantine")
    assert "sender" in reason and "sms_id" in reason and "time" in reason


async def test_oversized_body_is_refused_with_413(service: Service) -> None:
    big = mo_form(text="x" * (service.settings.mo_max_body + 10))
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=big)
    assert resp.status_code == 413
    assert f"over {service.settings.mo_max_body} bytes" in resp.text
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 0


async def test_oversized_chunked_body_without_a_length_is_refused_with_413(service: Service) -> None:
    """A body sent in chunks announces no length: the limit holds on the bytes that arrive."""
    body = urlencode(mo_form(text="x" * (service.settings.mo_max_body + 10))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, content=chunks(), headers={"Content-Type": FORM})
        assert resp.status_code == 413
        small = urlencode(mo_form()).encode()

        async def one_chunk() -> AsyncIterator[bytes]:
            yield small

        resp = await client.post(service.mo_url, content=one_chunk(), headers={"Content-Type": FORM})
    assert resp.status_code == 200  # a chunked body within the limit is an ordinary MO
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 1
    assert await service.scalar("SELECT count(*) FROM quarantine") == 0


async def test_other_methods_on_the_webhook_path_get_405(service: Service) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.get(service.mo_url)
    assert resp.status_code == 405
    assert "POST" in resp.headers["allow"]


async def test_a_client_gone_before_its_body_arrived_leaves_nothing_behind(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = service.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {service.settings.mo_path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {FORM}\r\n"
        "Content-Length: 500\r\n\r\nnumber=70120&sen".encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as client:
        assert (await client.post(service.mo_url, data=mo_form())).status_code == 200
    assert await service.scalar("SELECT count(*) FROM inbound_messages") == 1
    assert await service.scalar("SELECT count(*) FROM quarantine") == 0
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_unexpected_failure_is_a_clean_500_logged_and_counted(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(webhook, "take", broken)
    answered = 'smsflows_mo_requests_total{status="500"}'
    before = (await service.api.get("/metrics")).text
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=mo_form())
    assert resp.status_code == 500
    assert resp.text == "Internal Server Error: the error is logged with its details; try again later\n"
    assert "disk on fire" not in resp.text
    logged = [r for r in caplog.records if r.getMessage() == "unhandled RuntimeError on the MO webhook"]
    assert logged and logged[0].exc_info is not None
    after = (await service.api.get("/metrics")).text
    assert _count(after, answered) - _count(before, answered) == 1


async def test_text_over_the_limit_is_quarantined(service: Service) -> None:
    form = mo_form(text="y" * (service.settings.mo_max_text + 1))
    async with httpx.AsyncClient() as client:
        resp = await client.post(service.mo_url, data=form)
    assert resp.status_code == 200
    assert "over the limit" in await service.scalar("SELECT reason FROM quarantine")


@pytest.mark.postgres
async def test_database_down_answers_503_and_recovers(pg_database: str) -> None:
    """With PostgreSQL refusing connections the webhook says 503, then 200 once it is back."""
    settings = make_settings(pg_database)
    name = make_url(pg_database).database
    admin = await asyncpg.connect(_pg_dsn(pg_database).rsplit("/", 1)[0] + "/test")
    server, task, base = await start_service(settings)
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.post(base + "/mobitex/mo", data=mo_form())).status_code == 200
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            form = mo_form()
            resp = await client.post(base + "/mobitex/mo", data=form)
            assert resp.status_code == 503
            assert resp.headers["retry-after"] == "180"
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            for _ in range(400):  # resent as Mobitex does, until the service has seen it back
                resp = await client.post(base + "/mobitex/mo", data=form)
                if resp.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert resp.status_code == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        server.should_exit = True
        await task
    engine = create_engine(settings)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT deliveries FROM inbound_messages WHERE sms_id = :s"), {"s": form["sms_id"]}
            )
        ).scalar()
    await engine.dispose()
    assert stored == 1


@pytest.mark.postgres
async def test_database_known_down_is_answered_503_at_once_and_logged_once(
    pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After the first failed write no request waits for the database; one line starts the outage,
    one ends it with the count of requests refused."""
    settings = make_settings(pg_database)
    name = make_url(pg_database).database
    admin = await asyncpg.connect(_pg_dsn(pg_database).rsplit("/", 1)[0] + "/test")
    caplog.set_level(logging.INFO, logger="smsflows")
    server, task, base = await start_service(settings)
    refused = 0
    try:
        async with httpx.AsyncClient() as client:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            for _ in range(30):
                resp = await client.post(base + "/mobitex/mo", data=mo_form())
                assert resp.status_code == 503
                assert resp.headers["retry-after"] == "180"
                refused += 1
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            for _ in range(400):  # as Mobitex would, until the probe has seen the database back
                resp = await client.post(base + "/mobitex/mo", data=mo_form())
                if resp.status_code == 200:
                    break
                refused += 1
                await asyncio.sleep(0.05)
            assert resp.status_code == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        server.should_exit = True
        await task
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([e for e in errors if e.startswith("database unavailable")]) == 1, errors
    assert len([e for e in errors if e.startswith("database write failed")]) <= 1, errors
    back = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database back after")]
    assert len(back) == 1
    assert f": {refused} MO request(s) were answered 503 meanwhile" in back[0]


async def test_a_write_the_database_keeps_rolling_back_is_503_but_the_next_request_goes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Deadlocks are not an outage: the request is answered 503 (Mobitex sends it again) and the
    webhook does not answer the requests after it 503 while it waits for a database that is up."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}")
    real = webhook.take
    busy = [True]

    async def take(*args: Any, **kwargs: Any) -> Any:
        if busy.pop() if busy else False:
            raise DatabaseBusy("the database rolled the write back 3 times for concurrent writes")
        return await real(*args, **kwargs)

    monkeypatch.setattr(webhook, "take", take)
    caplog.set_level(logging.WARNING, logger="smsflows")
    server, task, base = await start_service(settings)
    try:
        async with httpx.AsyncClient() as client:
            first = await client.post(base + "/mobitex/mo", data=mo_form())
            second = await client.post(base + "/mobitex/mo", data=mo_form())
    finally:
        server.should_exit = True
        await task
    assert first.status_code == 503
    assert first.headers["retry-after"] == "180"
    assert second.status_code == 200
    said = [r.getMessage() for r in caplog.records]
    assert any("rolled the write back 3 times" in m and "Mobitex retries it" in m for m in said), said
    assert not any(m.startswith("database unavailable") for m in said), said
