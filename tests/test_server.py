"""How the server treats slow and too many clients, over real sockets."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from tests.conftest import make_settings, running


async def _connect(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _answer_then_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; a connection left open fails the test."""
    return await asyncio.wait_for(reader.read(), timeout=20)


async def test_drip_fed_headers_get_408_and_the_connection_closed(database_url: str) -> None:
    async with running(make_settings(database_url, request_timeout="0.5")) as service:
        reader, writer = await _connect(service.base_url)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        answer = await _answer_then_close(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"send it whole" in answer


async def test_a_body_that_never_arrives_closes_the_connection(database_url: str) -> None:
    async with running(make_settings(database_url, request_timeout="0.5")) as service:
        reader, writer = await _connect(service.base_url)
        writer.write(
            b"POST /mobitex/mo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 500\r\n\r\nnumber=70120&"
        )
        await writer.drain()
        answer = await _answer_then_close(reader)
        writer.close()
        assert await service.scalar("SELECT count(*) FROM quarantine") == 0
    assert b"200 OK" not in answer


async def test_a_connection_that_sends_nothing_is_closed(database_url: str) -> None:
    async with running(make_settings(database_url, request_timeout="0.5")) as service:
        reader, writer = await _connect(service.base_url)
        answer = await _answer_then_close(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_connections_over_the_cap_are_answered_503(database_url: str) -> None:
    async with running(make_settings(database_url, max_connections="2")) as service:
        idle = [await _connect(service.base_url) for _ in range(2)]
        async with httpx.AsyncClient() as client:
            over = await client.get(service.base_url + "/health")
        for _, writer in idle:
            writer.close()
        async with httpx.AsyncClient() as client:
            for _ in range(100):  # until the server has seen the idle ones go
                after = await client.get(service.base_url + "/health")
                if after.status_code == 200:
                    break
                await asyncio.sleep(0.05)
    assert over.status_code == 503
    assert after.status_code == 200
