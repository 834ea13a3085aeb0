"""The X API v2 emulator over real HTTP: its limits and error bodies as X documents them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from pats_trio.emulator.xapi import XEmulator, serve_xapi
from pats_trio.emulator.xrules import RuleSyntaxError, parse_rule
from tests.support import pats_trio_argv, status

TOKEN = "emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = "/2/tweets/search/stream/rules"
STREAM = "/2/tweets/search/stream"


async def started(nursery: trio.Nursery, **options: int) -> tuple[XEmulator, httpx.AsyncClient]:
    emulator = XEmulator(rate=0, filter_rate=0, seed=1, token=TOKEN, **options)
    url = await nursery.start(serve_xapi, emulator)
    return emulator, httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60)


async def test_rules_are_checked_added_listed_and_deleted(nursery: trio.Nursery) -> None:
    emulator, http = await started(nursery, max_rule_chars=30, max_rules=2)
    with trio.fail_after(10):
        add = {"add": [{"value": "python", "tag": "t"}, {"value": "(a b", "tag": "t"}]}
        dry = (await http.post(RULES, params={"dry_run": "true"}, json=add)).json()
        assert dry["meta"]["summary"] == {"created": 0, "not_created": 2, "valid": 1, "invalid": 1}
        assert dry["errors"][0]["title"] == "UnprocessableEntity"
        assert dry["errors"][0]["type"].endswith("/problems/invalid-rules")
        assert emulator.rules == {}, "a dry run changes nothing"
        added = (await http.post(RULES, json=add)).json()
        [rule] = added["data"]
        assert rule["value"] == "python"
        again = {"add": [{"value": "python"}, {"value": "x" * 31}, {"value": "b"}, {"value": "c"}]}
        answer = (await http.post(RULES, json=again)).json()
        titles = [e["title"] for e in answer["errors"]]
        assert titles == ["DuplicateRule", "UnprocessableEntity", "RulesCapExceeded"]
        assert answer["errors"][0]["id"] == rule["id"]
        listed = (await http.get(RULES)).json()
        assert {r["value"] for r in listed["data"]} == {"python", "b"}
        gone = (await http.post(RULES, json={"delete": {"ids": [rule["id"]]}})).json()
        assert gone["meta"]["summary"] == {"deleted": 1, "not_deleted": 0}
        both = await http.post(RULES, json={"add": [], "delete": {"ids": []}})
        assert both.status_code == 400


async def test_rule_changes_past_the_window_get_429_with_the_reset(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator, http = await started(nursery, rule_changes_per_window=2)
    with trio.fail_after(1000):
        for _ in range(2):
            assert (await http.post(RULES, json={"delete": {"ids": []}})).status_code == 200
        refused = await http.post(RULES, json={"delete": {"ids": []}})
        assert refused.status_code == 429
        reset = int(refused.headers["x-rate-limit-reset"])
        assert 899 <= reset - emulator.wall() <= 901
        assert refused.headers["x-rate-limit-remaining"] == "0"
        await trio.sleep(900)
        assert (await http.post(RULES, json={"delete": {"ids": []}})).status_code == 200


async def test_the_stream_wants_the_token_and_a_rule_allows_one_connection_and_sends_keepalives(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator, http = await started(nursery)
    with trio.fail_after(1000):
        refused = await httpx.AsyncClient(base_url=str(http.base_url)).get(STREAM)
        assert refused.status_code == 401
        no_rules = await http.get(STREAM)
        assert no_rules.status_code == 409, "X opens no filtered stream without rules"
        assert no_rules.headers["content-type"] == "application/problem+json"
        assert no_rules.json() == {
            "title": "ConnectionException",
            "detail": "This stream has no rules. Add at least one rule before connecting.",
            "connection_issue": "RuleConfigurationIssue",
            "type": "https://api.twitter.com/2/problems/streaming-connection",
        }
        emulator.add_rule("python")
        async with http.stream("GET", STREAM) as first:
            assert first.status_code == 200
            second = await http.get(STREAM)
            assert second.status_code == 429
            assert second.json()["connection_issue"] == "TooManyConnections"
            started_at = trio.current_time()
            chunks = first.aiter_raw()
            assert await anext(chunks) == b"\r\n"
            assert trio.current_time() - started_at == pytest.approx(20, abs=0.5)
    assert [c.status for c in emulator.connections] == [401, 409, 200, 429]


async def test_posts_carry_the_rules_they_matched(nursery: trio.Nursery) -> None:
    emulator, http = await started(nursery)
    emulator.add_rule("python", tag="pats-trio")
    emulator.add_rule("from:someone OR trio", tag="theirs")
    with trio.fail_after(10):
        async with http.stream("GET", STREAM) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(emulator.factory.status_matching(["python"], 1_700_000_000_000))
            emulator.inject(emulator.factory.status_matching(["golang"], 1_700_000_000_000))
            emulator.inject(emulator.factory.status_matching(["trio"], 1_700_000_000_000))
            lines = []
            async for line in response.aiter_lines():
                if line.strip():
                    lines.append(orjson.loads(line))
                if len(lines) == 2:
                    break
    assert [[r["tag"] for r in m["matching_rules"]] for m in lines] == [["pats-trio"], ["theirs"]]
    assert all(m["includes"]["users"] for m in lines)


@pytest.mark.parametrize("value", ["", "(a", "a OR", "from:", "-a", '"open'])
def test_rules_x_would_refuse_are_refused(value: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule(value)


async def test_emulate_x_runs_the_v2_emulator_as_its_own_process() -> None:
    argv = pats_trio_argv("emulate", "--x", "--port", "0", "--rate", "0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_", "X_"))}
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert process.stdout is not None
            seen = b""
            while (found := re.search(rb"at (http://127\.0\.0\.1:\d+)\n", seen)) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, seen
                seen += chunk
            async with httpx.AsyncClient(base_url=found.group(1).decode(), headers=AUTH) as http:
                answer = await http.post(RULES, json={"add": [{"value": "python", "tag": "t"}]})
                assert answer.json()["meta"]["summary"]["created"] == 1
                assert (await http.get(RULES)).json()["data"][0]["value"] == "python"
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5):
                    await process.wait()


LONG = "word " * 60 + "zanzibar at the end"


async def read_posts(response: httpx.Response, until_id: str) -> dict[str, dict[str, Any]]:
    """The posts read from an open stream, by id, up to and including `until_id`."""
    posts: dict[str, dict[str, Any]] = {}
    async for line in response.aiter_lines():
        if line.strip():
            message = orjson.loads(line)
            posts[message["data"]["id"]] = message
            if message["data"]["id"] == until_id:
                return posts
    raise AssertionError("the stream ended")


def link(expanded: str, unwound: str | None = None) -> dict[str, Any]:
    url = {"url": "https://t.co/abc", "expanded_url": expanded, "indices": [0, 0]}
    return url if unwound is None else {**url, "unwound_url": unwound}


async def test_foreign_rules_with_operators_get_the_posts_x_would_give_them(
    nursery: trio.Nursery,
) -> None:
    emulator, http = await started(nursery)
    ada = {"id": 1, "id_str": "1", "screen_name": "ada", "name": "Ada"}
    for value, tag in [
        ("from:ada has:links", "ada-links"),
        ('url:"example.com"', "site"),
        ("#python -is:retweet", "python-originals"),
        ("retweets_of:ada", "ada-retweeted"),
        ("rust lang:fr", "rust-fr"),
        ("to:ada", "to-ada"),
        ('"release notes" -@spam', "notes"),
        ("(cats OR dogs) has:media", "pets"),
        ("done", "end"),
    ]:
        emulator.add_rule(value, tag)
    hashtag = {"hashtags": [{"text": "Python", "indices": [0, 7]}], "user_mentions": []}
    statuses = [
        status(
            "new release notes", 11, user=ada, entities={"urls": [link("https://example.com/n")]}
        ),
        status("release notes, @spam", 12, entities={"user_mentions": [{"screen_name": "spam"}]}),
        status("#Python tips", 13, entities=hashtag),
        status(
            "RT @ada: #Python tips",
            14,
            retweeted_status=status("#Python tips", 13, user=ada, entities=hashtag),
            entities=hashtag,
        ),
        status("rust est bien", 15, lang="fr"),
        status("rust is nice", 16),
        status("thanks!", 17, in_reply_to_screen_name="ada", in_reply_to_status_id_str="9"),
        status("cats", 18),
        status("done", 19),
    ]
    with trio.fail_after(10):
        async with http.stream("GET", STREAM) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            for post in statuses:
                emulator.inject(post)
            posts = await read_posts(response, "19")
    tags = {post_id: sorted(r["tag"] for r in m["matching_rules"]) for post_id, m in posts.items()}
    assert tags == {
        "11": ["ada-links", "notes", "site"],
        "13": ["python-originals"],
        "14": ["ada-retweeted"],
        "15": ["rust-fr"],
        "17": ["to-ada"],
        "19": ["end"],
    }


async def test_keywords_match_the_whole_text_and_the_links_as_x_matches_them(
    nursery: trio.Nursery,
) -> None:
    emulator, http = await started(nursery)
    emulator.add_rule("zanzibar OR artemis OR okapi", "theirs")
    unwound = {"urls": [link("https://bit.ly/3x", "https://www.nasa.gov/artemis-launch")]}
    quoted = status("an okapi in the wild", 30)
    with trio.fail_after(10):
        async with http.stream(
            "GET", STREAM, params={"tweet.fields": "created_at,entities"}
        ) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(status(LONG, 21))
            emulator.inject(status("read this https://t.co/abc", 22, entities=unwound))
            emulator.inject(status("look", 23, quoted_status=quoted), unavailable=["30"])
            posts = await read_posts(response, "23")
    long_post = posts["21"]["data"]
    assert "zanzibar" not in long_post["text"], "cut short, as X sends a long post"
    assert "note_tweet" not in long_post, "not asked for, so not sent"
    [url] = posts["22"]["data"]["entities"]["urls"]
    assert url["unwound_url"] == "https://www.nasa.gov/artemis-launch"
    quote = posts["23"]
    assert "tweets" not in quote["includes"]
    [error] = quote["errors"]
    assert error["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    assert (error["resource_id"], error["resource_type"]) == ("30", "tweet")


async def test_a_long_post_comes_whole_in_its_note_tweet_when_asked(nursery: trio.Nursery) -> None:
    emulator, http = await started(nursery)
    emulator.add_rule("zanzibar", "theirs")
    with trio.fail_after(10):
        async with http.stream("GET", STREAM, params={"tweet.fields": "note_tweet"}) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(status(LONG, 21))
            posts = await read_posts(response, "21")
    assert posts["21"]["data"]["note_tweet"]["text"] == LONG


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ('"open', "Unterminated quote"),
        ("(a OR b", "Unbalanced parentheses"),
        ("a OR b)", "Unbalanced parentheses"),
        ("foo:bar python", "Reference to invalid operator 'foo'"),
        ("is:famous python", "Reference to invalid operator 'is:famous'"),
        ("-python", "Rules must contain a non-negation term"),
        ("has:links", "positive, standalone operator"),
        ("python OR is:retweet", "positive, standalone operator"),
        ("x" * 31, "Rule length is 31, which exceeds the 30 limit"),
    ],
)
async def test_rules_x_would_refuse_are_refused_with_x_s_body(
    nursery: trio.Nursery, value: str, detail: str
) -> None:
    emulator, http = await started(nursery, max_rule_chars=30)
    with trio.fail_after(10):
        answer = await http.post(RULES, json={"add": [{"value": value, "tag": "t"}]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["meta"]["summary"] == {"created": 0, "not_created": 1, "valid": 0, "invalid": 1}
    [error] = body["errors"]
    assert error["value"] == value
    assert error["title"] == "UnprocessableEntity"
    assert error["type"] == "https://api.twitter.com/2/problems/invalid-rules"
    assert any(detail in line for line in error["details"]), error["details"]
    assert emulator.rules == {}


async def test_error_bodies_are_the_problems_of_x_s_openapi_spec(nursery: trio.Nursery) -> None:
    _, http = await started(nursery, rule_changes_per_window=2)
    with trio.fail_after(10):
        first = (await http.post(RULES, json={"add": [{"value": "python", "tag": "t"}]})).json()
        again = (await http.post(RULES, json={"add": [{"value": "python", "tag": "u"}]})).json()
        limited = await http.post(RULES, json={"add": [{"value": "rust", "tag": "t"}]})
        wrong = await http.delete(RULES)
    [duplicate] = again["errors"]
    assert duplicate == {
        "value": "python",
        "id": first["data"][0]["id"],
        "title": "DuplicateRule",
        "type": "https://api.twitter.com/2/problems/duplicate-rules",
    }
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.json() == {
        "title": "Too Many Requests",
        "detail": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
    }
    assert wrong.status_code == 405
    assert {"type", "title"} <= set(wrong.json())
