"""The dispatcher's HTTP/1.1 transport against a real socket server: keep-alive, close, chunks, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import httpx
import pytest

from app.mobitex.client import MobitexClient
from app.mobitex.transport import KeepAliveTransport, proxied

MESSAGE_ID = "0123456789abcdef0123456789abcdef"
STATUS_LINE = f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456\n".encode()

ANSWERS = {
    b"/plain": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/close": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
    b"/chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"/sms.php": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(STATUS_LINE), STATUS_LINE),
}


class Server:
    """Answers each request by its path; counts the connections it was opened."""

    def __init__(self) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                path = head.split(b" ")[1]
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.bodies.append(await reader.readexactly(length))
                if path == b"/slow":
                    await asyncio.sleep(5)
                writer.write(ANSWERS[path])
                await writer.drain()
                if path == b"/close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield state, f"http://127.0.0.1:{port}"


async def test_requests_one_after_another_share_one_connection(server: tuple[Server, str]) -> None:
    state, url = server
    async with httpx.AsyncClient(transport=KeepAliveTransport(4)) as http:
        answers = [(await http.post(f"{url}/plain", content=b"x=%d" % i)).text for i in range(3)]
    assert answers == ["hello"] * 3 and state.connections == 1
    assert state.bodies == [b"x=0", b"x=1", b"x=2"]


async def test_a_connection_the_server_closes_is_not_used_again(server: tuple[Server, str]) -> None:
    state, url = server
    async with httpx.AsyncClient(transport=KeepAliveTransport(4)) as http:
        first = await http.get(f"{url}/close")
        second = await http.get(f"{url}/plain")
    assert (first.text, second.text, state.connections) == ("bye", "hello", 2)


async def test_a_chunked_answer_is_read_whole(server: tuple[Server, str]) -> None:
    _, url = server
    async with httpx.AsyncClient(transport=KeepAliveTransport(4)) as http:
        assert (await http.get(f"{url}/chunks")).text == "abcde"
        assert (await http.get(f"{url}/plain")).text == "hello"


async def test_no_answer_in_time_is_a_read_timeout_and_no_server_a_connect_error(
    server: tuple[Server, str],
) -> None:
    _, url = server
    async with httpx.AsyncClient(transport=KeepAliveTransport(4), timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{url}/slow")
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/plain")  # the discard port: nobody listens


def test_a_proxy_from_the_environment_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert proxied("https://api.mobitex.pl/sms.php")
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    assert not proxied("https://api.mobitex.pl/sms.php")


async def test_a_client_on_the_transport_posts_the_whole_form_each_time(server: tuple[Server, str]) -> None:
    state, url = server
    transport = KeepAliveTransport(4)
    client = MobitexClient(f"{url}/sms.php", "konto & co", "hasło", "70120", transport=transport)
    texts = ["Głosuję na A & B = 100%+", "GLOS B"]
    try:
        for text, ext_id in zip(texts, ["outbox-1", None], strict=True):
            [result] = await client.send_each(["+48 600 123 456"], text, ext_id=ext_id)
            assert result is not None and (result.message_id, result.number) == (MESSAGE_ID, "48600123456")
    finally:
        await client.aclose()
        await transport.aclose()
    md5 = hashlib.md5("hasło".encode()).hexdigest()
    account = {"user": ["konto & co"], "pass": [md5], "from": ["70120"], "number": ["48600123456"]}
    first, second = (parse_qs(body.decode("ascii"), strict_parsing=True) for body in state.bodies)
    assert first == account | {"type": ["unicode"], "text": [texts[0]], "ext_id": ["outbox-1"]}
    assert second == account | {"type": ["sms"], "text": [texts[1]]}
    assert state.connections == 1
    for head in state.heads:
        assert head.startswith(b"POST /sms.php HTTP/1.1\r\n")
        assert b"\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n" in head
        assert f"\r\nHost: {url.removeprefix('http://')}\r\n".encode() in head
