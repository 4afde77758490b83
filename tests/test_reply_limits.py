"""Replies without news go to a phone once per quiet interval, and each phone has a daily cap."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from app.db.models import ReplyAllowance
from tests.conftest import Service, make_settings, running, send_mo, write_flows

VOTE = """
id = "final"
kind = "vote"
numbers = ["70120"]
keywords = ["GLOS"]
starts = 2020-01-01T00:00:00
ends = 2099-01-01T00:00:00
EXTRA
[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }

[replies]
accepted = "Głos na {{ option }} przyjęty."
repeat = "Już głosowałeś."
invalid = "Wyślij GLOS A lub GLOS B."
"""
INFO = """
id = "ID"
kind = "autoreply"
keywords = ["KEY"]

[replies]
reply = "Informacja."
"""
PHONE = "48600123456"
PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def events(svc: Service, flow: str) -> list[tuple[str, dict[str, str]]]:
    rows = await svc.rows("SELECT outcome, detail FROM flow_events WHERE flow_id = :f ORDER BY id", f=flow)
    return [(outcome, json.loads(detail) if detail else {}) for outcome, detail in rows]


async def replies(svc: Service) -> list[str]:
    return [r[0] for r in await svc.rows("SELECT text FROM outbox ORDER BY id")]


async def test_twenty_repeats_from_one_phone_get_one_reply(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE.replace("EXTRA", ""))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, sender=PHONE, text="GLOS B")
        # Some in one batch, some in the next: the interval holds within a batch and across them.
        await asyncio.gather(*(send_mo(svc, sender=PHONE, text="GLOS B") for _ in range(20)))
        await send_mo(svc, sender=PHONE, text="GLOS X")  # invalid: no news either, same interval
        assert await replies(svc) == ["Głos na B przyjęty.", "Już głosowałeś."]
        log = await events(svc, "final")
        assert [o for o, _ in log].count("accepted") == 1
        assert [o for o, _ in log].count("repeat") == 1
        held = [d for o, d in log if o == "suppressed"]
        assert len(held) == 20 and {d["outcome"] for d in held} == {"repeat", "invalid"}
        assert "less than 5 min ago" in held[0]["reason"]
        # Another phone has its own interval.
        await send_mo(svc, sender="48600999888", text="GLOS Z")
        assert (await replies(svc))[-1] == "Wyślij GLOS A lub GLOS B."
        # Once the interval is over, the next reply without news goes out.
        async with svc.engine.begin() as conn:
            await conn.execute(
                update(ReplyAllowance).where(ReplyAllowance.scope == "final").values(until=PAST)
            )
        await send_mo(svc, sender=PHONE, text="GLOS B")
        assert (await replies(svc))[-1] == "Już głosowałeś."


async def test_a_premium_rate_flow_answers_every_message(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE.replace("EXTRA", "answer_every_message = true"))
    settings = make_settings(database_url, flows_dir=str(flows), replies_per_day="2")
    async with running(settings) as svc:
        for _ in range(4):
            await send_mo(svc, sender=PHONE, text="GLOS A")
        assert await replies(svc) == ["Głos na A przyjęty."] + ["Już głosowałeś."] * 3
        assert "suppressed" not in [o for o, _ in await events(svc, "final")]


async def test_the_daily_cap_counts_every_flow_but_never_holds_an_accepted_vote(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(
        tmp_path / "flows",
        final=VOTE.replace("EXTRA", ""),
        info=INFO.replace("ID", "info").replace("KEY", "INFO"),
        help=INFO.replace("ID", "help").replace("KEY", "POMOC"),
    )
    settings = make_settings(database_url, flows_dir=str(flows), replies_per_day="3")
    async with running(settings) as svc:
        for text in ["INFO", "POMOC", "INFO", "POMOC", "GLOS A", "INFO"]:
            await send_mo(svc, sender=PHONE, text=text)
        await send_mo(svc, sender="48600999888", text="INFO")  # another phone has its own cap
        assert await replies(svc) == ["Informacja."] * 3 + ["Głos na A przyjęty.", "Informacja."]
        held = [d for o, d in await events(svc, "info") + await events(svc, "help") if o == "suppressed"]
        assert len(held) == 2 and {d["outcome"] for d in held} == {"replied"}
        assert held[0]["reason"] == "the phone had its 3 replies of the day (SMSFLOWS_REPLIES_PER_DAY)"


def test_flows_check_shows_each_flows_repeats_and_the_daily_cap(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import main

    premium = VOTE.replace("EXTRA", "answer_every_message = true").replace('"final"', '"premium"')
    info = (
        INFO.replace("ID", "info").replace("KEY", "INFO").replace("[replies]", "quiet_minutes = 0\n[replies]")
    )
    flows = write_flows(
        tmp_path / "flows",
        final=VOTE.replace("EXTRA", "quiet_minutes = 15"),
        premium=premium.replace('["GLOS"]', '["PREMIUM"]'),
        info=info,
    )
    env = {"COLUMNS": "250", "SMSFLOWS_REPLIES_PER_DAY": "7"}
    result = CliRunner().invoke(main, ["flows", "check", str(flows)], env=env)
    assert result.exit_code == 0, result.output
    table = result.stdout.split("Replies rendered with sample data")[0]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.startswith("│")}
    assert "once in 15 min" in rows["final"]
    assert "every message answered" in rows["premium"]
    assert "every time" in rows["info"]
    assert (
        "Replies to one phone, all flows together: at most 7 a day (SMSFLOWS_REPLIES_PER_DAY)"
        in result.stdout
    )
    report = json.loads(CliRunner().invoke(main, ["flows", "check", str(flows), "--json"], env=env).stdout)
    assert report["replies_per_day"] == 7
    assert {f["id"]: f["repeats"] for f in report["flows"]}["final"] == "once in 15 min"


OPTOUT = """
id = "stop"
kind = "optout"
keywords = ["STOP"]

[optout]
start_keywords = ["START"]

[replies]
opted_out = "Wypisano."
opted_in = "Zapisano."
"""


async def test_stop_and_start_are_answered_past_the_daily_cap(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(
        tmp_path / "flows", info=INFO.replace("ID", "info").replace("KEY", "INFO"), stop=OPTOUT
    )
    settings = make_settings(database_url, flows_dir=str(flows), replies_per_day="1")
    async with running(settings) as svc:
        for text in ["INFO", "INFO", "STOP", "START"]:
            await send_mo(svc, sender=PHONE, text=text)
        assert await replies(svc) == ["Informacja.", "Wypisano.", "Zapisano."]


async def test_a_join_past_the_cap_keeps_its_outcome_and_marks_the_reply(
    database_url: str, tmp_path: Path
) -> None:
    from tests.test_flow_subscription import NEWS

    info = INFO.replace("ID", "info").replace("KEY", "INFO")
    flows = write_flows(tmp_path / "flows", info=info, news=NEWS.replace("WINDOW", ""))
    settings = make_settings(database_url, flows_dir=str(flows), replies_per_day="1")
    async with running(settings) as svc:
        for text in ["INFO", "NEWS"]:
            await send_mo(svc, sender=PHONE, text=text)
        assert await replies(svc) == ["Informacja."]
        ((outcome, detail),) = await events(svc, "news")
        assert outcome == "joined" and "SMSFLOWS_REPLIES_PER_DAY" in detail["suppressed"]
        assert await svc.scalar("SELECT status FROM subscriptions WHERE phone = :p", p=PHONE) == "active"


async def test_expired_allowances_are_pruned_and_running_ones_kept(database_url: str, tmp_path: Path) -> None:
    from app.privacy.retention import purge

    flows = write_flows(tmp_path / "flows", final=VOTE.replace("EXTRA", ""))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for phone in ("48600000001", "48600000002", "48600000003"):
            await send_mo(svc, sender=phone, text="GLOS X")  # invalid: starts a quiet interval
        assert len(await svc.rows("SELECT phone FROM reply_allowances")) == 6  # quiet + day, per phone
        async with svc.engine.begin() as conn:
            await conn.execute(
                update(ReplyAllowance).where(ReplyAllowance.phone != "48600000003").values(until=PAST)
            )
        purged = await purge(svc.engine, svc.settings, by_age=False)
        assert purged.reply_allowances == 4
        assert "4 expired reply allowance(s)" in purged.summary()
        left = await svc.rows("SELECT phone, scope FROM reply_allowances ORDER BY scope")
        assert left == [("48600000003", "*day"), ("48600000003", "final")]
        # The pruned phones behave as if their intervals were over: the next reply goes out.
        await send_mo(svc, sender="48600000001", text="GLOS X")
        assert (await replies(svc))[-1] == "Wyślij GLOS A lub GLOS B."
