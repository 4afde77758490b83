"""The MT client: answer parsing on canned answers, then the real protocol against the fake gateway."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from app.errors import GatewayError, GatewayNoAnswer, PermanentGatewayError, TransientGatewayError
from app.mobitex.client import MobitexClient, SendResult
from app.mobitex.encoding import MessageTooLong
from app.mobitex.fake_gateway import FakeGatewayConfig, fake_gateway_running
from app.mobitex.statuses import STATUSES, Outcome

URL = "https://api.mobitex.pl/sms.php"
PASSWORD = "tajne-hasło"
MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()
MESSAGE_ID = "aa30cfcc92bbe2a920f35aa8628462ac"
ACCEPTED = f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456\n"

Handler = Callable[[httpx.Request], httpx.Response]


class Canned:
    """An httpx transport that answers every request with one handler and keeps the requests."""

    def __init__(self, handler: Handler | str) -> None:
        self.requests: list[httpx.Request] = []
        if isinstance(handler, str):
            text = handler
            self.handler: Handler = lambda _: httpx.Response(200, text=text)
        else:
            self.handler = handler

    def client(self, url: str = URL, sender: str | None = "70120") -> MobitexClient:
        transport = httpx.MockTransport(self._answer)
        return MobitexClient(url, "konto", PASSWORD, sender, http=httpx.AsyncClient(transport=transport))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def form(self) -> dict[str, str]:
        body = self.requests[-1].content.decode("ascii")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def test_accepted_message_gives_mobitex_id_and_number() -> None:
    result = await Canned(ACCEPTED).client().send("48600123456", "GLOS A")
    assert result == SendResult("002", MESSAGE_ID, "48600123456")
    assert result.ok


@pytest.mark.parametrize(
    "line",
    [
        f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456",
        f"status:002,id:{MESSAGE_ID},number:48600123456",
        f"  STATUS : 002 ,  ID : {MESSAGE_ID.upper()} ,  NUMBER : 48600123456  \r\n\r\n",
        f"Status: 2, Id: {MESSAGE_ID}, Number: +48600123456",
        f"Status=002; Id={MESSAGE_ID}; Number=48600123456;",
    ],
)
async def test_answer_spacing_case_and_separators_are_tolerated(line: str) -> None:
    result = await Canned(line).client().send("48600123456", "GLOS A")
    assert result == SendResult("002", MESSAGE_ID, "48600123456")


async def test_request_is_a_utf8_form_post_with_the_password_as_md5() -> None:
    canned = Canned(ACCEPTED)
    await canned.client().send("+48 600 123 456", "Głosuję na A", ext_id="outbox-17")
    request = canned.requests[0]
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded; charset=UTF-8"
    assert canned.form == {
        "user": "konto",
        "pass": MD5,
        "type": "unicode",
        "number": "48600123456",
        "text": "Głosuję na A",
        "from": "70120",
        "ext_id": "outbox-17",
    }
    assert PASSWORD.encode() not in request.content


async def test_without_a_sender_or_ext_id_those_fields_are_left_out() -> None:
    canned = Canned(ACCEPTED)
    await canned.client(sender=None).send("48600123456", "GLOS A")
    assert "from" not in canned.form
    assert "ext_id" not in canned.form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GLOS A", "sms"),
        ("a" * 160, "sms"),
        ("a" * 161, "concat"),
        ("Zażółć gęślą jaźń", "unicode"),
        ("ą" * 70, "unicode"),
        ("ą" * 71, "unicode_concat"),
        ("€" * 80, "sms"),  # extension characters take two septets: 160
        ("€" * 81, "concat"),
        ("{}" * 41, "concat"),
        ("Café über año", "sms"),  # accented letters of the GSM alphabet stay GSM-7
    ],
)
async def test_type_is_chosen_from_the_text(text: str, expected: str) -> None:
    canned = Canned(ACCEPTED)
    await canned.client().send("48600123456", text)
    assert canned.form["type"] == expected


async def test_a_given_type_is_sent_as_given() -> None:
    canned = Canned(ACCEPTED)
    await canned.client().send("48600123456", "Zazolc", type="sms_flash")
    assert canned.form["type"] == "sms_flash"


@pytest.mark.parametrize("text", ["a" * 460, "ą" * 202, "€" * 230])
async def test_text_over_three_parts_is_refused_before_sending(text: str) -> None:
    canned = Canned(ACCEPTED)
    with pytest.raises(MessageTooLong, match="Shorten it"):
        await canned.client().send("48600123456", text)
    assert canned.requests == []


@pytest.mark.parametrize("code", sorted(c for c, s in STATUSES.items() if not s.ok))
async def test_every_failure_status_raises_its_class_with_code_and_meaning(code: str) -> None:
    status = STATUSES[code]
    expected = TransientGatewayError if status.outcome is Outcome.TRANSIENT else PermanentGatewayError
    with pytest.raises(expected) as caught:
        await Canned(f"Status: {code}, Id: , Number: 48600123456").client().send("48600123456", "x")
    assert caught.value.status == code
    assert caught.value.meaning == status.meaning
    assert f"status {code} ({status.meaning})" in str(caught.value)
    assert status.advice in str(caught.value)


def test_status_classes_are_as_documented() -> None:
    outcome = {code: status.outcome for code, status in STATUSES.items()}
    assert {c for c, o in outcome.items() if o is Outcome.SUCCESS} == {"002", "003", "004", "005"}
    assert {c for c, o in outcome.items() if o is Outcome.TRANSIENT} == {"201"}
    assert set(outcome) == {"002", "003", "004", "005", "007", "010", "001", "103", "104", "105"} | {
        "106", "107", "110", "113", "114", "201", "202", "204", "205", "206", "301",
    }  # fmt: skip


@pytest.mark.parametrize("line", ["Status: 001", "Status: 001, Id: , Number: ", "status: 001 , id: 0"])
async def test_error_line_without_id_or_number_is_still_read(line: str) -> None:
    with pytest.raises(PermanentGatewayError, match="wrong login or password") as caught:
        await Canned(line).client().send("48600123456", "x")
    assert caught.value.status == "001"


async def test_unknown_status_is_permanent_and_named() -> None:
    with pytest.raises(PermanentGatewayError, match="status 999 \\(unknown status\\)"):
        await Canned("Status: 999, Id: , Number: 48600123456").client().send("48600123456", "x")


async def test_no_funds_tells_the_operator_to_top_up() -> None:
    with pytest.raises(PermanentGatewayError, match="top up the Mobitex account") as caught:
        await Canned("Status: 202, Id: , Number: 48600123456").client().send("48600123456", "x")
    assert caught.value.meaning == "no funds on the account"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "OK",
        "Status: 002, Id: not-hex, Number: 48600123456",
        "Status: 002, Number: 48600123456",  # accepted, but no Id to follow it up with
        f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456\nWarning: mysql_connect()",
    ],
)
async def test_unreadable_answer_is_transient_and_quotes_the_body(body: str) -> None:
    with pytest.raises(TransientGatewayError, match="unreadable answer from Mobitex") as caught:
        await Canned(body).client().send("48600123456", "x")
    assert repr(body.strip()[:50])[1:-1] in str(caught.value)
    assert caught.value.status is None


async def test_a_long_unreadable_answer_is_truncated_in_the_error() -> None:
    with pytest.raises(TransientGatewayError) as caught:
        await Canned("<p>" + "x" * 5000).client().send("48600123456", "x")
    assert len(str(caught.value)) < 400
    assert "…" in str(caught.value)


@pytest.mark.parametrize(
    ("http_status", "expected"),
    [
        (500, TransientGatewayError),
        (502, TransientGatewayError),
        (503, TransientGatewayError),
        (429, TransientGatewayError),
        (400, PermanentGatewayError),
        (403, PermanentGatewayError),
        (404, PermanentGatewayError),
        (301, PermanentGatewayError),
    ],
)
async def test_http_errors_are_transient_for_5xx_and_429_else_permanent(
    http_status: int, expected: type[GatewayError]
) -> None:
    canned = Canned(lambda _: httpx.Response(http_status, text=ACCEPTED))
    with pytest.raises(expected, match=f"HTTP {http_status}"):
        await canned.client().send("48600123456", "x")


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")]
)
async def test_network_errors_and_timeouts_are_transient(error: httpx.HTTPError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(TransientGatewayError, match="Mobitex"):
        await Canned(fail).client().send("48600123456", "x")


async def test_send_many_joins_numbers_and_returns_one_result_per_line() -> None:
    answer = (
        f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456\n"
        "Status: 106, Id: , Number: 123\n"
        f"Status: 002, Id: {'b' * 32}, Number: 48600111222\n"
    )
    canned = Canned(answer)
    results = await canned.client().send_many(["48600123456", "123", "+48 600 111 222"], "GLOS A")
    assert canned.form["number"] == "48600123456,123,48600111222"
    assert [(r.status, r.number, r.ok) for r in results] == [
        ("002", "48600123456", True),
        ("106", "123", False),
        ("002", "48600111222", True),
    ]
    assert results[1].code.meaning == "number wrong or missing"


async def test_send_many_raises_when_no_number_was_accepted() -> None:
    answer = "Status: 001, Id: , Number: 48600123456\nStatus: 001, Id: , Number: 48600111222\n"
    with pytest.raises(PermanentGatewayError, match="001"):
        await Canned(answer).client().send_many(["48600123456", "48600111222"], "x")


async def test_send_each_gives_each_number_its_own_line_whatever_their_order() -> None:
    answer = (
        f"Status: 002, Id: {'b' * 32}, Number: 48600111222\n"
        "Status: 106, Id: , Number: 123\n"
        f"Status: 002, Id: {MESSAGE_ID}, Number: 48600123456\n"
    )
    results = await Canned(answer).client().send_each(["48600123456", "123", "+48 600 111 222"], "GLOS A")
    assert [(r.status, r.message_id) if r else None for r in results] == [
        ("002", MESSAGE_ID),
        ("106", ""),
        ("002", "b" * 32),
    ]


async def test_send_each_gives_none_to_a_number_the_answer_leaves_out() -> None:
    results = await Canned(ACCEPTED).client().send_each(["48600123456", "48600111222"], "x")
    assert [r.message_id if r else None for r in results] == [MESSAGE_ID, None]


async def test_send_each_applies_a_lone_error_line_to_every_number() -> None:
    results = await Canned("Status: 001\n").client().send_each(["48600123456", "48600111222"], "x")
    assert [r.status if r else None for r in results] == ["001", "001"]


@pytest.mark.parametrize(
    ("error", "no_answer"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow to connect"), False),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("cut"), True),
    ],
)
async def test_only_errors_after_the_request_left_say_mobitex_may_have_taken_it(
    error: httpx.HTTPError, no_answer: bool
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(TransientGatewayError) as raised:
        await Canned(fail).client().send_each(["48600123456"], "x")
    assert isinstance(raised.value, GatewayNoAnswer) is no_answer
    assert ("may have been accepted" in str(raised.value)) is no_answer


async def test_send_to_one_number_refuses_an_answer_of_several_lines() -> None:
    with pytest.raises(TransientGatewayError, match="2 status lines"):
        await Canned(ACCEPTED * 2).client().send("48600123456", "x")


@pytest.mark.parametrize(
    ("body", "amount"),
    [("OK 123.45", Decimal("123.45")), ("OK -12,50\n", Decimal("-12.50")), ("ok 0", Decimal("0"))],
)
async def test_balance_reads_ok_amount(body: str, amount: Decimal) -> None:
    canned = Canned(body)
    assert await canned.client().balance() == amount
    request = canned.requests[0]
    assert request.method == "GET"
    assert request.url.copy_with(query=None) == "https://api.mobitex.pl/balance.php"
    assert dict(request.url.params) == {"user": "konto", "pass": MD5}


async def test_balance_url_keeps_the_folder_of_sms_php() -> None:
    canned = Canned("OK 1")
    await canned.client("http://gateway.example:8080/api/v2/sms.php").balance()
    assert canned.requests[0].url.path == "/api/v2/balance.php"


@pytest.mark.parametrize(
    ("body", "expected", "code"),
    [
        ("ERROR 001", PermanentGatewayError, "001"),
        ("ERROR 206", PermanentGatewayError, "206"),
        ("ERROR 201", TransientGatewayError, "201"),
        ("Fatal error", TransientGatewayError, None),
    ],
)
async def test_balance_errors_carry_the_status(
    body: str, expected: type[GatewayError], code: str | None
) -> None:
    with pytest.raises(expected) as caught:
        await Canned(body).client().balance()
    assert caught.value.status == code


async def test_password_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Canned(
        lambda r: httpx.Response(200, text="OK 1" if "balance" in r.url.path else ACCEPTED)
    ).client()
    await client.send("48600123456", "x")
    await client.balance()
    assert "balance.php" in caplog.text
    assert PASSWORD not in caplog.text
    assert MD5 not in caplog.text
    assert PASSWORD not in repr(client)
    assert MD5 not in repr(client)


# --- against the fake gateway, over real HTTP ------------------------------------------------------

FAKE = FakeGatewayConfig(user="konto", password=PASSWORD, senders=("70120", "SMSFLOWS"))


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with fake_gateway_running(FAKE) as url:
        yield url


def real(gateway: str, password: str = PASSWORD, sender: str = "70120", timeout: float = 5) -> MobitexClient:
    return MobitexClient(f"{gateway}/sms.php", "konto", password, sender, timeout=timeout)


async def control(gateway: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway) as http:
        response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.is_success, response.text
    return response


async def test_sent_message_is_recorded_by_the_gateway(gateway: str) -> None:
    async with real(gateway) as client:
        result = await client.send("48600123456", "Dziękujemy za głos!", ext_id="outbox-17")
    recorded = (await control(gateway, "GET", "/fake/messages", params={"number": "48600123456"})).json()
    assert [(m["id"], m["text"], m["type"], m["from"], m["ext_id"]) for m in recorded] == [
        (result.message_id, "Dziękujemy za głos!", "unicode", "70120", "outbox-17")
    ]


async def test_wrong_password_is_permanent_001(gateway: str) -> None:
    async with real(gateway, password="wrong") as client:
        with pytest.raises(PermanentGatewayError, match="SMSFLOWS_MOBITEX_PASSWORD") as caught:
            await client.send("48600123456", "x")
    assert caught.value.status == "001"


async def test_unauthorised_sender_is_permanent_114(gateway: str) -> None:
    async with real(gateway, sender="OTHERBRAND") as client:
        with pytest.raises(PermanentGatewayError, match="sender not authorised") as caught:
            await client.send("48600123456", "x")
    assert caught.value.status == "114"


async def test_injected_system_error_is_transient_and_the_retry_succeeds(gateway: str) -> None:
    await control(gateway, "POST", "/fake/fail", json={"status": "201"})
    async with real(gateway) as client:
        with pytest.raises(TransientGatewayError) as caught:
            await client.send("48600123456", "x")
        assert caught.value.status == "201"
        assert (await client.send("48600123456", "x")).ok


async def test_injected_http_503_is_transient(gateway: str) -> None:
    await control(gateway, "POST", "/fake/fail", json={"http_status": 503, "count": 2})
    async with real(gateway) as client:
        for _ in range(2):
            with pytest.raises(TransientGatewayError, match="HTTP 503"):
                await client.send("48600123456", "x")
        assert (await client.send("48600123456", "x")).ok


async def test_gateway_slower_than_the_timeout_is_transient(gateway: str) -> None:
    await control(gateway, "POST", "/fake/fail", json={"delay": 1.0})
    async with real(gateway, timeout=0.2) as client:
        with pytest.raises(TransientGatewayError, match=r"did not answer within 0\.2 s"):
            await client.send("48600123456", "x")


async def test_send_many_against_the_gateway_reports_the_bad_number(gateway: str) -> None:
    async with real(gateway) as client:
        results = await client.send_many(["48600123456", "600", "48600111222"], "GLOS A")
    assert [r.status for r in results] == ["002", "106", "002"]
    recorded = (await control(gateway, "GET", "/fake/messages")).json()
    assert {m["id"] for m in recorded} == {results[0].message_id, results[2].message_id}


async def test_balance_from_the_gateway(gateway: str) -> None:
    async with real(gateway) as client:
        assert await client.balance() == Decimal("100.00")
    async with real(gateway, password="wrong") as client:
        with pytest.raises(PermanentGatewayError, match="balance") as caught:
            await client.balance()
    assert caught.value.status == "001"


def _smsflows(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOWS_")} | env
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_balance_command_prints_the_balance(gateway: str, tmp_path: Path) -> None:
    env = {
        "SMSFLOWS_MOBITEX_URL": f"{gateway}/sms.php",
        "SMSFLOWS_MOBITEX_USER": "konto",
        "SMSFLOWS_MOBITEX_PASSWORD": PASSWORD,
    }
    # The command runs as its own process; waiting for it in a thread keeps this loop serving the fake.
    result = await asyncio.to_thread(_smsflows, ["balance"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Mobitex balance of konto: 100.00"


def test_balance_command_without_credentials_says_what_to_set(tmp_path: Path) -> None:
    result = _smsflows(["balance"], {}, tmp_path)
    assert result.returncode == 1
    assert "set SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


async def test_balance_command_with_a_wrong_password_is_one_clear_line(gateway: str, tmp_path: Path) -> None:
    env = {
        "SMSFLOWS_MOBITEX_URL": f"{gateway}/sms.php",
        "SMSFLOWS_MOBITEX_USER": "konto",
        "SMSFLOWS_MOBITEX_PASSWORD": "wrong",
    }
    result = await asyncio.to_thread(_smsflows, ["balance"], env, tmp_path)
    assert result.returncode == 1
    assert "status 001 (no authorisation: wrong login or password)" in result.stderr
    assert "Traceback" not in result.stderr
