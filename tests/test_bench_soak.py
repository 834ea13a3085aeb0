"""The soak benchmark's figures (`benchmarks/bench_soak.py`), read from made-up records: the lead
reads every fix's effect in them, so overlaps, gaps, losses and "connected" shown with no
upstream must be counted right. The soak itself runs by hand (`nox -s bench -- soak`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from bench_soak import Upstream, canary_figures, stream_figures, upstreams
from soak_clients import CANARY_BASE, Canary, Received


def test_two_connections_of_one_stream_count_as_an_overlap_and_a_gap_as_none_open() -> None:
    conns = [
        Upstream("sample", 0.0, 10.0, 200),
        Upstream("sample", 8.0, 14.0, 200),  # a second owner connects 2 s before the first ends
        Upstream("sample", 16.0, None, 200),  # then nothing for 2 s
        Upstream("sample", 17.0, 17.0, 420),  # refused at once: never open
        Upstream("filter", 0.0, None, 200),
    ]
    sample = stream_figures(conns, "sample", 5.0, 20.0)
    assert sample["opened"] == 2
    assert sample["refused"] == 1
    assert sample["max_open"] == 2
    assert sample["overlap_s"] == pytest.approx(2.0, abs=0.15)
    assert sample["no_upstream_s"] == pytest.approx(2.0, abs=0.15)
    assert sample["shortest_gap_s"] == pytest.approx(1.0)
    filt = stream_figures(conns, "filter", 5.0, 20.0)
    assert (filt["opened"], filt["max_open"], filt["overlap_s"]) == (0, 1, 0.0)


def test_records_are_moved_onto_our_clock() -> None:
    records = [{"kind": "sample", "opened_at": 105.0, "closed_at": None, "status": 200}]
    (conn,) = upstreams(records, offset=100.0)
    assert (conn.opened, conn.closed) == (5.0, None)


def test_a_canary_counts_loss_duplicates_its_longest_gap_and_a_stale_connected() -> None:
    canary = Canary("c", track="", deflate=False, received=Received(base=CANARY_BASE))
    got = canary.received
    got.new_connection()
    got.statuses.append((0.5, "sample", "connected"))
    for number, at in ((1, 1.0), (2, 2.0), (2, 2.1), (5, 6.0)):
        got.frame(f'{{"type":"tweet","tweet":{{"id_str":"{CANARY_BASE + number}"}}}}', at)
    got.frame('{"type":"tweet","tweet":{"id_str":"1234"}}', 6.5)  # the emulator's own: not counted
    conns = [Upstream("sample", 0.0, 3.0, 200), Upstream("sample", 5.0, None, 200)]
    figures = canary_figures(canary, [1, 2, 3, 4, 5], conns, 0.0, 7.0)
    assert figures["lost"] == 2
    assert figures["duplicated"] == 1
    assert figures["longest_gap_s"] == pytest.approx(3.9)
    # Shown "connected" from 3 s to 5 s while no sample connection was open.
    assert figures["connected_without_upstream_s"] == pytest.approx(2.0, abs=0.15)
    assert figures["states"] == ["connected"]
