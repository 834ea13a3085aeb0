"""/readyz, /metrics and JSON logs, over real HTTP against the app served by hypercorn."""

from __future__ import annotations

import io
import itertools
import logging
import sys
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from pats_trio.app import create_app
from pats_trio.config import Settings, SettingsError, validate
from pats_trio.logs import HANDLER_NAME, JsonFormatter, configure_logging
from pats_trio.looplag import BUCKETS
from tests.support import Served, Viewer, status

TIMEOUT = 15
POLL_SECONDS = 0.02

_ids = itertools.count(50_000)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(body: str) -> Samples:
    """Every sample in a scrape, keyed by its name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(client: httpx.AsyncClient, served: Served) -> Samples:
    response = await client.get(served.http_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)


async def scrape_until(
    client: httpx.AsyncClient, served: Served, predicate: Callable[[Samples], bool]
) -> Samples:
    """Scrape until `predicate` holds (the hub updates as the server handles each socket)."""
    while True:
        samples = await scrape(client, served)
        if predicate(samples):
            return samples
        await trio.sleep(POLL_SECONDS)


async def test_readyz_reports_hub_upstreams_and_viewers(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            idle = await client.get(served.http_url + "/readyz")
            assert idle.status_code == 200
            body = idle.json()
            assert isinstance(body.pop("worker"), str)
            assert isinstance(body.pop("pid"), int)
            assert body == {
                "ready": True,
                "hub": "running",
                "upstream": {"sample": "idle", "filter": "idle"},
                "viewers": {"sample": 0, "filter": 0},
                "broker": {"mode": "memory"},
            }
            async with open_websocket_url(served.ws_url + "?filter=python") as ws:
                await Viewer(ws).next_of("hello")
                await served.emulator.wait_until(lambda emu: bool(emu.open_connections("filter")))
                while True:
                    body = (await client.get(served.http_url + "/readyz")).json()
                    if body["upstream"]["filter"] == "connected":
                        break
                    await trio.sleep(POLL_SECONDS)
    assert body["ready"] is True
    assert body["upstream"]["sample"] == "idle"
    assert body["viewers"] == {"sample": 0, "filter": 1}


async def test_readyz_is_503_before_serving_and_after_shutdown() -> None:
    settings = Settings(emulator_rate=0.0, linger_seconds=0.0, min_reconnect_seconds=0.0)
    app = create_app(settings)
    with trio.fail_after(TIMEOUT):
        before = await app.test_client().get("/readyz")
        assert before.status_code == 503
        assert (await before.get_json()) == {"ready": False, "hub": "starting"}
        async with app.test_app() as test_app:
            during = await test_app.test_client().get("/readyz")
            assert during.status_code == 200
        after = await app.test_client().get("/readyz")
    assert after.status_code == 503
    body = await after.get_json()
    assert (body["ready"], body["hub"]) == (False, "stopped")


async def test_metrics_follow_a_sample_viewer(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            before = await scrape(client, served)
            assert value(before, "pats_viewers", kind="sample") == 0
            assert value(before, "pats_upstream_connects_total", kind="sample") == 0
            async with open_websocket_url(served.ws_url) as ws:
                viewer = Viewer(ws)
                await viewer.next_of("hello")
                await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
                connected = await scrape_until(
                    client,
                    served,
                    lambda s: (
                        value(s, "pats_upstream_state", kind="sample", state="connected") == 1
                    ),
                )
                assert value(connected, "pats_viewers", kind="sample") == 1
                assert value(connected, "pats_upstream_connects_total", kind="sample") == 1
                assert value(connected, "pats_upstream_backoff_seconds", kind="sample") == 0
                for i in range(3):
                    served.emulator.inject(status(f"metrics tweet {i}", next(_ids)))
                await viewer.tweets(3)
                during = await scrape(client, served)
            after = await scrape_until(
                client, served, lambda s: value(s, "pats_viewers", kind="sample") == 0
            )
    assert value(during, "pats_upstream_tweets_total", kind="sample") == 3
    assert value(during, "pats_upstream_tweets_total", kind="filter") == 0
    # hello, the connecting and connected statuses, then three tweets
    assert value(during, "pats_frames_delivered_total", kind="sample") >= 3 + 1
    assert value(during, "pats_frames_delivered_total", kind="sample") > value(
        before, "pats_frames_delivered_total", kind="sample"
    )
    assert value(during, "pats_frames_skipped_total", kind="sample") == 0
    assert value(during, "pats_slow_viewer_closes_total") == 0
    assert value(after, "pats_viewers", kind="sample") == 0
    assert value(after, "pats_hub_running") == 1
    for counter in ("malformed_messages", "oversized_messages", "unknown_messages", "withheld"):
        assert value(after, f"pats_upstream_{counter}_total", kind="sample") == 0


async def test_metrics_of_a_shared_feed_stay_out_of_a_worker_without_one(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            samples = await scrape(client, served)
    assert value(samples, "pats_upstream_owner") == 1
    assert [name for name, _ in samples if name.startswith("pats_redis_")] == []
    assert ("pats_upstream_terms_of_office_total", frozenset()) not in samples


async def test_metrics_show_how_late_the_event_loop_runs(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            samples = await scrape_until(
                client, served, lambda s: value(s, "pats_event_loop_lag_seconds_count") >= 2
            )
    count = value(samples, "pats_event_loop_lag_seconds_count")
    bounds = [*(str(bound) for bound in BUCKETS), "+Inf"]
    cumulative = [value(samples, "pats_event_loop_lag_seconds_bucket", le=b) for b in bounds]
    assert cumulative == sorted(cumulative)
    assert cumulative[-1] == count
    assert ("pats_event_loop_stalls_total", frozenset()) in samples


async def test_metrics_show_the_filter_union(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            assert value(await scrape(client, served), "pats_filter_union_phrases") == 0
            async with open_websocket_url(served.ws_url + "?filter=python,%20trio%20rust") as ws:
                await Viewer(ws).next_of("hello")
                samples = await scrape_until(
                    client, served, lambda s: value(s, "pats_viewers", kind="filter") == 1
                )
    assert value(samples, "pats_filter_union_phrases") == 2
    assert value(samples, "pats_viewers", kind="sample") == 0


async def test_metrics_count_disconnects_by_reason_and_show_backoff(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client, open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            await viewer.next_of("status")
            # The stream drops mid-body (a network error to the client); the quick reconnect is
            # answered 503, so a 5 s HTTP backoff follows.
            served.emulator.fail_next(503)
            served.emulator.drop_streams("sample")
            samples = await scrape_until(
                client,
                served,
                lambda s: (
                    value(s, "pats_upstream_state", kind="sample", state="backoff") == 1
                    and value(s, "pats_upstream_disconnects_total", kind="sample", reason="http")
                    == 1
                ),
            )
            ready = (await client.get(served.http_url + "/readyz")).json()
    assert value(samples, "pats_upstream_disconnects_total", kind="sample", reason="network") == 1
    assert value(samples, "pats_upstream_disconnects_total", kind="sample", reason="stall") == 0
    assert value(samples, "pats_upstream_backoff_seconds", kind="sample") == 5.0
    assert value(samples, "pats_upstream_backoff_seconds", kind="filter") == 0
    assert ready["upstream"]["sample"] == "backoff"
    assert ready["ready"] is True


async def test_two_apps_in_one_process_have_their_own_metrics(
    make_served: Callable[..., Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        first: Served = await make_served()
        second: Served = await make_served()
        async with httpx.AsyncClient() as client, open_websocket_url(first.ws_url) as ws:
            await Viewer(ws).next_of("hello")
            one = await scrape_until(
                client, first, lambda s: value(s, "pats_viewers", kind="sample") == 1
            )
            other = await scrape(client, second)
    assert value(one, "pats_viewers", kind="sample") == 1
    assert value(other, "pats_viewers", kind="sample") == 0


SECRETS = {
    "twitter_consumer_key": "ck-SECRET-1f2e3d",
    "twitter_consumer_secret": "cs-SECRET-4c5b6a",
    "twitter_access_token": "at-SECRET-7a8b9c",
    "twitter_access_token_secret": "ats-SECRET-0d1e2f",
}


async def test_no_secret_reaches_frames_metrics_readyz_or_logs(
    make_served: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served(**SECRETS)
        assert served.app.worker.settings.source == "twitter"
        async with (
            httpx.AsyncClient() as client,
            open_websocket_url(served.ws_url + "?filter=python") as ws_filter,
            open_websocket_url(served.ws_url) as ws_sample,
        ):
            viewer = Viewer(ws_sample)
            await served.emulator.wait_until(lambda emu: len(emu.open_connections()) == 2)
            served.emulator.inject(status("python secrets stay secret", next(_ids)))
            await viewer.tweets(1)
            await Viewer(ws_filter).tweets(1)
            # An upstream that echoes a credential back must not get it to anyone.
            echo = f'{{"errors":[{{"message":"bad {SECRETS["twitter_consumer_secret"]}"}}]}}'
            served.emulator.fail_next(401, body=echo.encode())
            served.emulator.drop_streams("sample")
            error = await viewer.next_of("status")
            while error["state"] != "error":
                error = await viewer.next_of("status")
            assert "401" in error["reason"]
            await scrape_until(
                client,
                served,
                lambda s: (
                    value(s, "pats_upstream_disconnects_total", kind="sample", reason="fatal") == 1
                ),
            )
            metrics = (await client.get(served.http_url + "/metrics")).text
            ready = (await client.get(served.http_url + "/readyz")).text
    logs = "\n".join(
        [caplog.text, *(str(record.__dict__) for record in caplog.records)],
    )
    assert "HTTP 401" in logs  # the session did log, so the check below means something
    frames = orjson.dumps(viewer.frames).decode()
    for secret in SECRETS.values():
        assert secret not in frames
        assert secret not in metrics
        assert secret not in ready
        assert secret not in logs


def json_logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger("pats_trio.test_observability.json")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


async def test_json_log_lines_carry_level_logger_message_and_exc() -> None:
    stream = io.StringIO()
    logger = json_logger(stream)
    logger.info("connected %s (track=%d bytes)", "filter", 12)
    try:
        raise RuntimeError('boom "quoted"\nnewline')
    except RuntimeError:
        logger.exception("upstream failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first.keys() == {"ts", "level", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["logger"] == "pats_trio.test_observability.json"
    assert first["message"] == "connected filter (track=12 bytes)"
    assert first["ts"].endswith("Z")
    assert "T" in first["ts"]
    assert second["level"] == "ERROR"
    assert second["message"] == "upstream failed"
    assert "RuntimeError: boom" in second["exc"]
    assert "Traceback" in second["exc"]


async def test_configure_logging_json_writes_one_object_per_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    pats_logger = logging.getLogger("pats_trio")
    saved_level = pats_logger.level
    root.handlers = []
    try:
        configure_logging("INFO", "text")
        configure_logging("INFO", fmt="json")  # reformats our handler, adds no second one
        assert [h.name for h in root.handlers] == [HANDLER_NAME]
        logging.getLogger("pats_trio.hub").info("viewer %d joined", 7)
        logging.getLogger("pats_trio.hub").debug("not at INFO")
    finally:
        root.handlers = saved
        pats_logger.setLevel(saved_level)
    lines = stderr.getvalue().splitlines()
    assert [orjson.loads(line)["message"] for line in lines] == ["viewer 7 joined"]
    entry = orjson.loads(lines[0])
    assert (entry["level"], entry["logger"]) == ("INFO", "pats_trio.hub")


async def test_log_format_is_validated() -> None:
    validate(Settings(log_format="json"))
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        validate(Settings(log_format="xml"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", fmt="xml")
