"""The MT client: send SMS through Mobitex's ``sms.php`` and read the balance from ``balance.php``.

Every failure becomes a :class:`~app.errors.GatewayError` that says whether resending can help
(transient) or not (permanent), so the outbox decides retries from the type alone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Literal
from urllib.parse import quote_plus, urlencode

import httpx
import msgspec

from app.errors import GatewayError, GatewayNoAnswer, PermanentGatewayError, TransientGatewayError
from app.mobitex.encoding import check_fits
from app.mobitex.mo_form import normalise_number
from app.mobitex.statuses import Outcome, Status, describe
from app.mobitex.transport import FormPost, KeepAliveTransport

log = logging.getLogger("smsflows.mobitex")

SendType = Literal["sms", "concat", "sms_flash", "unicode", "unicode_concat"]
MAX_NUMBERS = 500  # per request, as public Mobitex clients send at most
SHOWN_BODY = 200  # characters of an unreadable answer quoted in the error
FORM = "application/x-www-form-urlencoded; charset=UTF-8"

# `Status: 002, Id: <32 hex>, Number: 48600123456`, tolerant of spacing, case and separators;
# error lines may carry an empty Id or none at all.
_STATUS_LINE = re.compile(
    r"^\s*status\s*[:=]\s*(?P<status>\d{1,3})\s*"
    r"(?:[,;]\s*id\s*[:=]\s*(?P<id>[0-9a-z]*)\s*)?"
    r"(?:[,;]\s*number\s*[:=]\s*\+?(?P<number>\d*)\s*)?[,;]?\s*$",
    re.IGNORECASE,
)
_MESSAGE_ID = re.compile(r"^[0-9a-f]{32}$")
_BALANCE = re.compile(r"^\s*(?:OK\s+(?P<amount>-?\d+(?:[.,]\d+)?)|ERROR\s+(?P<code>\d{1,3}))\s*$", re.I)


class SendResult(msgspec.Struct, frozen=True):
    """One status line of an sms.php answer: one recipient."""

    status: str
    message_id: str
    """Mobitex's 32-hex Id of the message; empty when the line reports an error."""
    number: str

    @property
    def code(self) -> Status:
        return describe(self.status)

    @property
    def ok(self) -> bool:
        return self.code.ok


class MobitexClient:
    """Async client of one Mobitex account; ``base_url`` is the ``sms.php`` address.

    Only the MD5 of the password is kept (it is what Mobitex takes), and neither appears in logs.
    Pass ``http`` to share a connection pool; otherwise the client owns one (close it, or use
    ``async with``). With ``transport`` (the dispatcher's), sends go straight to it, past the
    client's cookie, redirect and hook handling that sms.php needs none of, and the account's fields
    are form-encoded once: a send encodes only its numbers and text.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        sender: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        transport: KeepAliveTransport | None = None,
    ) -> None:
        self.url = httpx.URL(base_url)
        folder = self.url.path.rsplit("/", 1)[0]
        self.balance_url = self.url.copy_with(path=f"{folder}/balance.php", query=None)
        self.user = user
        self.sender = sender
        self._pass = hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self._timeout = httpx.Timeout(timeout)
        self._transport = transport
        self._form = FormPost(self.url, FORM, timeout)
        account = {"user": user, "pass": self._pass} | ({"from": sender} if sender else {})
        self._account = urlencode(account, encoding="utf-8").encode("ascii")
        _hide_password_in_httpx_log()

    def __repr__(self) -> str:
        return f"MobitexClient({str(self.url)!r}, user={self.user!r}, sender={self.sender!r})"

    async def __aenter__(self) -> MobitexClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def send(
        self, number: str, text: str, ext_id: str | None = None, type: SendType | None = None
    ) -> SendResult:
        """Send ``text`` to one number; raise a :class:`GatewayError` unless Mobitex accepted it.

        ``type`` is chosen from the text (GSM-7 or UCS-2, one part or several) unless given;
        text over 3 parts raises :class:`~app.mobitex.encoding.MessageTooLong` before sending.
        """
        results = await self._send([number], text, ext_id, type)
        if len(results) != 1:
            raise TransientGatewayError(
                f"Mobitex answered {len(results)} status lines for one number; retry later",
            )
        if not results[0].ok:
            raise refused(results[0])
        return results[0]

    async def send_many(
        self, numbers: Sequence[str], text: str, ext_id: str | None = None, type: SendType | None = None
    ) -> list[SendResult]:
        """Send one text to up to 500 numbers in one request; one result per answer line.

        Lines may fail one by one (a wrong number among good ones), so failed lines are returned,
        not raised; only when no line succeeded is the first failure raised.
        """
        if not 1 <= len(numbers) <= MAX_NUMBERS:
            raise PermanentGatewayError(
                f"give between 1 and {MAX_NUMBERS} numbers per request, not {len(numbers)}"
            )
        results = await self._send(numbers, text, ext_id, type)
        if not any(r.ok for r in results):
            raise refused(results[0])
        return results

    async def send_each(
        self, numbers: Sequence[str], text: str, ext_id: str | None = None, type: SendType | None = None
    ) -> list[SendResult | None]:
        """Send one text to up to 500 numbers in one request; each number's own result, in order.

        A number the answer has no line for gets None: whether Mobitex took it is unknown. A lone
        error line that names none of the numbers (wrong password, say) is every number's result.
        Only a failure of the request as a whole (network, HTTP, timeout, unreadable) is raised.
        """
        if not 1 <= len(numbers) <= MAX_NUMBERS:
            raise PermanentGatewayError(
                f"give between 1 and {MAX_NUMBERS} numbers per request, not {len(numbers)}"
            )
        wanted = [normalise_number(n) for n in numbers]
        return match_lines(wanted, await self._send(wanted, text, ext_id, type, normalised=True))

    async def balance(self) -> Decimal:
        """The account balance from balance.php (negative on a postpaid account in debt)."""
        # GET with the query, as Mobitex documents balance.php.
        params = {"user": self.user, "pass": self._pass}
        body = await self._request("GET", self.balance_url, params=params)
        match = _BALANCE.match(body.strip())
        if match is None:
            raise _unreadable(self.balance_url, body)
        if match["code"] is not None:
            code = describe(match["code"])
            raise _error(code)(
                f"Mobitex refused the balance query: status {code.code} ({code.meaning}); {code.advice}",
                status=code.code,
                meaning=code.meaning,
            )
        return Decimal(match["amount"].replace(",", "."))

    async def _send(
        self,
        numbers: Sequence[str],
        text: str,
        ext_id: str | None,
        type: SendType | None,
        normalised: bool = False,
    ) -> list[SendResult]:
        measured = check_fits(text)  # Mobitex's 3-part ceiling, whatever type is asked for
        kind = type or measured.mobitex_type
        number = ",".join(numbers if normalised else map(normalise_number, numbers))
        if self._transport is not None:
            body = await self._post_direct(self._transport, self._content(kind, number, text, ext_id))
        else:
            fields = {"user": self.user, "pass": self._pass, "type": kind, "number": number, "text": text}
            if self.sender:
                fields["from"] = self.sender
            if ext_id:
                fields["ext_id"] = ext_id
            content = urlencode(fields, encoding="utf-8").encode("ascii")
            body = await self._request("POST", self.url, content=content, headers={"Content-Type": FORM})
        results = parse_answer(body)
        if results is None:
            raise _unreadable(self.url, body)
        if log.isEnabledFor(logging.DEBUG):
            for result in results:
                log.debug("sms.php %s: status %s, id %s", result.number, result.status, result.message_id)
        return results

    def _content(self, kind: str, number: str, text: str, ext_id: str | None) -> bytes:
        """The form of one send: the account's fields as encoded once, then this send's own."""
        own = f"&type={kind}&number={quote_plus(number)}&text={quote_plus(text, encoding='utf-8')}"
        if ext_id:
            own += f"&ext_id={quote_plus(ext_id)}"
        return self._account + own.encode("ascii")

    async def _post_direct(self, transport: KeepAliveTransport, content: bytes) -> str:
        return await self._exchange(self.url, _posted(transport, self._form, content))

    async def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """One HTTP exchange; network and HTTP failures become gateway errors."""
        sent = self._http.request(
            method, url, params=params, content=content, headers=headers, timeout=self._timeout
        )
        return await self._exchange(url, _read(sent))

    async def _exchange(self, url: httpx.URL, sent: Awaitable[tuple[int, str]]) -> str:
        try:
            code, text = await sent
        except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError) as exc:
            raise TransientGatewayError(  # nothing was sent: a retry cannot send anything twice
                f"cannot reach Mobitex at {url} ({type(exc).__name__}: {exc}); "
                "check SMSFLOWS_MOBITEX_URL and the network, then retry",
                meaning="network error",
            ) from None
        except httpx.TimeoutException:
            raise GatewayNoAnswer(
                f"Mobitex did not answer within {self._timeout.read} s ({url}); "
                "the message may have been accepted: check before resending by hand",
                meaning="timeout",
            ) from None
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise GatewayNoAnswer(
                f"the connection to Mobitex at {url} broke before its answer ({type(exc).__name__}); "
                "the message may have been accepted: check before resending by hand",
                meaning="no answer",
            ) from None
        except httpx.TransportError as exc:
            raise TransientGatewayError(
                f"cannot reach Mobitex at {url} ({type(exc).__name__}: {exc}); "
                "check SMSFLOWS_MOBITEX_URL and the network, then retry",
                meaning="network error",
            ) from None
        if code >= 500 or code == 429:
            raise TransientGatewayError(
                f"Mobitex answered HTTP {code} at {url}: it is busy or failing; retry later",
                meaning=f"HTTP {code}",
            )
        if code >= 300:
            raise PermanentGatewayError(
                f"Mobitex answered HTTP {code} at {url}: check SMSFLOWS_MOBITEX_URL "
                "(e.g. https://api.mobitex.pl/sms.php)",
                meaning=f"HTTP {code}",
            )
        return text


async def _read(sent: Awaitable[httpx.Response]) -> tuple[int, str]:
    response = await sent
    await response.aread()
    return response.status_code, response.text


async def _posted(transport: KeepAliveTransport, form: FormPost, content: bytes) -> tuple[int, str]:
    code, body = await transport.post(form, content)
    # sms.php answers ASCII status lines; a stray byte must not hide them (the parser judges).
    return code, body.decode("utf-8", "replace")


def parse_answer(body: str) -> list[SendResult] | None:
    """The status lines of an sms.php answer, or None if any non-blank line is not one.

    A success line must carry a 32-hex Id: without one we could not match delivery reports or
    replies to the message.
    """
    results = []
    for line in body.splitlines():
        if not line.strip():
            continue
        match = _STATUS_LINE.match(line)
        if match is None:
            return None
        status = describe(match["status"])
        message_id = (match["id"] or "").lower()
        if status.ok and not _MESSAGE_ID.match(message_id):
            return None
        results.append(SendResult(status.code, message_id, match["number"] or ""))
    return results or None


def match_lines(numbers: Sequence[str], results: Sequence[SendResult]) -> list[SendResult | None]:
    """Each of ``numbers`` (normalised, in request order) with its own status line, or None."""
    if len(results) == 1 and len(numbers) == 1:
        return [results[0]]  # one number, one line: it is that number's, whatever it names
    if len(results) == 1 and not results[0].ok and results[0].number not in numbers:
        return [results[0]] * len(numbers)  # the whole request refused
    in_order = len(results) == len(numbers)
    if in_order and all(r.number in ("", n) for r, n in zip(results, numbers, strict=True)):
        return list(results)  # one line per number, in order (the usual answer)
    by_number = {r.number: r for r in results if r.number}
    return [by_number.get(n) for n in numbers]


def _error(status: Status) -> type[GatewayError]:
    return TransientGatewayError if status.outcome is Outcome.TRANSIENT else PermanentGatewayError


def refused(result: SendResult) -> GatewayError:
    """The error for a refusing status line: permanent or transient, with what to do."""
    status = result.code
    return _error(status)(
        f"Mobitex refused the message to {result.number or 'the number'}: status {status.code} "
        f"({status.meaning}); {status.advice}",
        status=status.code,
        meaning=status.meaning,
    )


def _unreadable(url: httpx.URL, body: str) -> TransientGatewayError:
    # A proxy's error page or a truncated answer more often than a Mobitex refusal: worth a retry.
    shown = body.strip()[:SHOWN_BODY] + ("…" if len(body.strip()) > SHOWN_BODY else "")
    return TransientGatewayError(
        f"unreadable answer from Mobitex at {url}: {shown!r}; retry later, and report it if it lasts",
        meaning="unreadable answer",
    )


class _HidePassword(logging.Filter):
    """httpx logs every request URL at INFO, and balance.php carries the password digest in its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.copy_set_param("pass", "hidden")
                if isinstance(arg, httpx.URL) and "pass" in arg.params
                else arg
                for arg in record.args
            )
        return True


def _hide_password_in_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _HidePassword) for f in logger.filters):
        logger.addFilter(_HidePassword())
