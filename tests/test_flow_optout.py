"""Opt-out: STOP leaves every list and stops every message until START, through the real webhook."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Service, make_settings, running, write_flows
from tests.test_flow_subscription import OPTOUT, PHONE, SURVEY, flows_folder, load_error, say, status, svc

__all__ = ["svc"]  # the fixture: the subscription flows with STOP and a survey beside them


async def test_stop_leaves_every_list_and_marks_the_phone_opted_out(svc: Service) -> None:
    await say(svc, "NEWS")
    await say(svc, "DZIEN")  # pending: STOP cancels it too
    await say(svc, "NEWS", sender="48600000009")
    reply = await say(svc, "Stop.", 5)
    assert reply == "Wypisano Cię ze wszystkich list. Aby wrócić, wyślij START."
    assert dict(await svc.rows("SELECT list_id, status FROM subscriptions WHERE phone = :p", p=PHONE)) == {
        "news": "left",
        "daily": "left",
    }
    assert await status(svc, "news", "48600000009") == "active"
    assert await svc.scalar("SELECT opted_out_at FROM contacts WHERE phone = :p", p=PHONE) is not None
    event = await svc.rows("SELECT outcome, detail FROM flow_events WHERE flow_id = 'stop'")
    assert event[0][0] == "opted_out" and '"lists":"daily, news"' in event[0][1]
    assert await say(svc, "NIE", 6) == reply  # repeating STOP confirms again


async def test_join_while_opted_out_is_refused_until_start(svc: Service) -> None:
    await say(svc, "STOP")
    assert await say(svc, "NEWS", 1) == "Wysłałeś STOP. Wyślij START, a potem NEWS."
    assert await status(svc, "news") is None
    await say(svc, "START", 2)
    assert await say(svc, "NEWS", 3) == "Zapisano Cię na news. Wypisanie: STOPNEWS."


async def test_start_clears_the_opt_out_but_rejoins_no_list(svc: Service) -> None:
    await say(svc, "NEWS")
    await say(svc, "STOP", 1)
    assert await say(svc, "start", 2) == "Znowu możemy do Ciebie pisać. Zapisz się na listę jej słowem."
    assert await svc.scalar("SELECT opted_out_at FROM contacts WHERE phone = :p", p=PHONE) is None
    assert await status(svc, "news") == "left"
    events = await svc.rows("SELECT outcome FROM flow_events WHERE flow_id = 'stop' ORDER BY id")
    outcomes = [r[0] for r in events]
    assert outcomes == ["opted_out", "opted_in"]


async def test_stop_wins_inside_a_survey_that_refuses_other_keywords_and_ends_it(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(flows_folder(tmp_path / "flows"), quiz=SURVEY)
    async with running(make_settings(database_url, flows_dir=str(flows))) as s:
        assert await say(s, "ANKIETA") == "Jak oceniasz program?"
        await say(s, "NEWS", 1)  # the survey keeps other keywords to itself...
        assert await status(s, "news") is None
        assert await s.scalar("SELECT status FROM conversations WHERE sender = :p", p=PHONE) == "active"
        assert await say(s, "STOP", 2) == "Wypisano Cię ze wszystkich list. Aby wrócić, wyślij START."
        assert await s.scalar("SELECT status FROM conversations WHERE sender = :p", p=PHONE) == "aborted"
        # ...but not STOP, and it asks nothing more: the next message is matched as usual.
        assert await say(s, "7", 3) == ""
        assert await s.scalar("SELECT count(*) FROM survey_answers") == 0


async def test_stop_followed_by_any_words_opts_out_of_everything(svc: Service) -> None:
    await say(svc, "NEWS")
    await say(svc, "STOP NEWS", 1)
    assert await status(svc, "news") == "left"
    assert await svc.scalar("SELECT opted_out_at FROM contacts WHERE phone = :p", p=PHONE) is not None


def test_no_other_flow_may_claim_a_stop_keyword(tmp_path: Path) -> None:
    vote = (
        'id = "poll"\nkind = "autoreply"\nnumbers = ["70120"]\nkeywords = ["NIE"]\n[replies]\nreply = "x"\n'
    )
    message = load_error(tmp_path, poll=vote, stop=OPTOUT)
    assert "keywords: NIE on number 70120 is already claimed" in message
