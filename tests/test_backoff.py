"""Tests for the reconnect policy: the exact delay ladders, their caps, reset and class switches."""

from __future__ import annotations

import doctest

import pytest

from pats_trio.upstream import backoff as backoff_module
from pats_trio.upstream.backoff import FATAL_RETRY_SECONDS, Backoff, ConnectionBudget, classify


def test_network_errors_climb_linearly_by_a_quarter_second_to_16() -> None:
    backoff = Backoff()
    delays = [backoff.after_network_error() for _ in range(70)]
    assert delays[:5] == [0.25, 0.5, 0.75, 1.0, 1.25]
    assert delays[63] == 16.0
    assert delays[62] == 15.75
    assert delays[64:] == [16.0] * 6


def test_http_errors_double_from_5_to_320() -> None:
    backoff = Backoff()
    delays = [backoff.after_http_error(503) for _ in range(9)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 320.0, 320.0]


def test_many_http_errors_stay_at_the_cap() -> None:
    backoff = Backoff()
    delays = [backoff.after_http_error(500) for _ in range(2000)]
    assert delays[-1] == 320.0


@pytest.mark.parametrize("status", [420, 429])
def test_rate_limited_doubles_from_a_minute_to_16_minutes(status: int) -> None:
    backoff = Backoff()
    delays = [backoff.after_http_error(status) for _ in range(7)]
    assert delays == [60.0, 120.0, 240.0, 480.0, 960.0, 960.0, 960.0]


def test_420_and_429_share_one_ladder() -> None:
    backoff = Backoff()
    assert [backoff.after_http_error(420), backoff.after_http_error(429)] == [60.0, 120.0]


def test_fatal_is_a_slow_fixed_retry_that_leaves_other_ladders_alone() -> None:
    backoff = Backoff()
    assert backoff.after_http_error(500) == 5.0
    assert [backoff.after_fatal(401) for _ in range(3)] == [FATAL_RETRY_SECONDS] * 3
    assert FATAL_RETRY_SECONDS == 300.0
    assert backoff.after_http_error(500) == 10.0


def test_first_drop_after_a_connection_is_immediate_then_network_ladder() -> None:
    backoff = Backoff()
    assert [backoff.after_drop() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert backoff.after_network_error() == 1.0


def test_reset_restarts_every_ladder() -> None:
    backoff = Backoff()
    for _ in range(5):
        backoff.after_network_error()
        backoff.after_http_error(500)
        backoff.after_http_error(420)
        backoff.after_drop()
    backoff.reset()
    assert backoff.after_drop() == 0.0
    assert backoff.after_http_error(500) == 5.0
    assert backoff.after_http_error(420) == 60.0
    assert backoff.after_network_error() == 0.25


def test_switching_classes_keeps_each_ladder_where_it_was() -> None:
    backoff = Backoff()
    sequence = [
        backoff.after_network_error(),
        backoff.after_network_error(),
        backoff.after_http_error(503),
        backoff.after_network_error(),
        backoff.after_http_error(420),
        backoff.after_http_error(503),
        backoff.after_http_error(429),
        backoff.after_network_error(),
    ]
    assert sequence == [0.25, 0.5, 5.0, 0.75, 60.0, 10.0, 120.0, 1.0]


def test_a_typical_outage_sequence() -> None:
    """Connected, dropped, server refuses for a while, then accepts again."""
    backoff = Backoff()
    backoff.reset()
    assert backoff.after_drop() == 0.0
    assert backoff.after_network_error() == 0.25
    assert backoff.after_http_error(503) == 5.0
    assert backoff.after_http_error(503) == 10.0
    backoff.reset()
    assert backoff.after_drop() == 0.0
    assert backoff.after_http_error(503) == 5.0


def test_connections_that_drop_quickly_do_not_reconnect_in_a_tight_loop() -> None:
    backoff = Backoff()
    delays = []
    for _ in range(4):
        backoff.reset()
        delays.append(backoff.after_drop(uptime=0.1))
    assert delays == [0.25, 0.5, 0.75, 1.0]
    backoff.reset()
    assert backoff.after_drop(uptime=3600.0) == 0.0
    backoff.reset()
    assert backoff.after_drop(uptime=0.1) == 0.25


def test_short_drop_ladder_is_capped() -> None:
    backoff = Backoff()
    for _ in range(100):
        backoff.reset()
        delay = backoff.after_drop(uptime=0.0)
    assert delay == 16.0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ok"),
        (401, "fatal"),
        (403, "fatal"),
        (404, "fatal"),
        (406, "fatal"),
        (413, "fatal"),
        (416, "fatal"),
        (420, "rate_limited"),
        (429, "rate_limited"),
        (500, "http_error"),
        (502, "http_error"),
        (503, "http_error"),
        (204, "http_error"),
        (302, "http_error"),
        (400, "http_error"),
    ],
)
def test_classify(status: int, verdict: str) -> None:
    assert classify(status) == verdict
    assert Backoff.classify(status) == verdict


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(backoff_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_connection_budget_keeps_a_minimum_interval() -> None:
    budget = ConnectionBudget(min_interval=5.0, max_per_window=100)
    assert budget.delay(0.0) == 0.0
    budget.record(0.0)
    assert budget.delay(2.0) == 3.0
    assert budget.delay(5.0) == 0.0


def test_connection_budget_caps_attempts_per_five_minutes() -> None:
    budget = ConnectionBudget(min_interval=0.0, max_per_window=3)
    for now in (0.0, 10.0, 20.0):
        assert budget.delay(now) == 0.0
        budget.record(now)
    assert budget.delay(30.0) == 270.0, "the fourth waits until the first leaves the window"
    budget.record(300.0)
    assert budget.delay(305.0) == 5.0, "then the second one's turn decides"
