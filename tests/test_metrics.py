"""``/metrics``: Prometheus text, behind the token, and one scrape shows every worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import API_TOKEN, Service, free_port, make_settings, mo_form, send_mo, start_service


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


async def test_metrics_need_the_token_and_count_what_came_in_and_is_queued(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url) as anon:
        assert (await anon.get("/metrics")).status_code == 401
    before = (await service.api.get("/metrics")).text
    await send_mo(service)
    await send_mo(service)
    async with httpx.AsyncClient() as client:
        await client.post(service.mo_url, content=b"garbage", headers={"Content-Type": "text/plain"})
    queued = await service.api.post("/api/messages", json={"to": "48600123456", "text": "Hej"})
    assert queued.status_code == 201
    resp = await service.api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = resp.text
    answered = 'smsflows_mo_requests_total{status="200"}'
    assert _value(after, answered) - _value(before, answered) == 3
    assert _value(after, 'smsflows_inbound_messages{status="ignored"}') == 2
    assert _value(after, 'smsflows_quarantine_requests{status="held"}') == 1
    assert _value(after, 'smsflows_outbox_messages{status="queued"}') == 1
    assert _value(after, "smsflows_writer_batch_size_count") > _value(
        before, "smsflows_writer_batch_size_count"
    )
    assert "# TYPE smsflows_mo_request_seconds histogram" in after


async def test_metrics_can_be_opened_or_turned_off(database_url: str) -> None:
    for setting, anonymous in (("open", 200), ("off", 404)):
        server, task, base = await start_service(make_settings(database_url, metrics=setting))
        try:
            async with httpx.AsyncClient(base_url=base) as anon:
                assert (await anon.get("/metrics")).status_code == anonymous, setting
        finally:
            server.should_exit = True
            await task


def test_one_scrape_adds_up_every_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'x.db'}",
        "SMSFLOWS_MO_ALLOWED_IPS": "127.0.0.1",
        "SMSFLOWS_API_TOKEN": API_TOKEN,
        "SMSFLOWS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        # New connections each time, so that both workers answer some of them.
        for _ in range(20):
            assert httpx.post(base + "/mobitex/mo", data=mo_form(), timeout=30).status_code == 200
        scrapes = [httpx.get(base + "/metrics", headers=headers, timeout=30).text for _ in range(6)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    for text in scrapes:
        assert _value(text, 'smsflows_mo_requests_total{status="200"}') == 20
        assert _value(text, 'smsflows_inbound_messages{status="ignored"}') == 20
