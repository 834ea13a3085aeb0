"""Fair shares as pure functions: the phrase budget and the pacing of filter restarts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pats_trio.shares import ADDRESS_BURST, VIEWER_BURST, UpstreamPacer, fair_union


def test_everything_fits_under_the_capacity() -> None:
    assert fair_union([["a", "b"], ["b", "c"]], 3) == {"a", "b", "c"}


def test_a_hog_gives_up_its_excess_and_a_small_holder_keeps_all() -> None:
    hog = [f"hog{i}" for i in range(400)]
    fair = fair_union([hog, ["newcomer", "second"]], 400)
    assert {"newcomer", "second"} <= fair
    assert len(fair) == 400
    assert set(hog[:398]) <= fair, "the hog loses its last phrases, in its own order"


def test_everyone_at_their_share_leaves_no_room_for_a_latecomer() -> None:
    holders = [[f"p{i}"] for i in range(400)]
    assert "late" not in fair_union([*holders, ["late"]], 400)


@given(
    st.lists(st.lists(st.sampled_from([f"p{i}" for i in range(40)]), unique=True), max_size=8),
    st.integers(min_value=0, max_value=40),
)
def test_the_share_is_max_min_fair(holdings: list[list[str]], capacity: int) -> None:
    fair = fair_union(holdings, capacity)
    assert len(fair) <= capacity
    assert fair <= set().union(*holdings) if holdings else fair == set()
    got = [len(fair & set(holding)) for holding in holdings]
    for holding, count in zip(holdings, got, strict=True):
        if count < len(holding):
            # Someone left short has at least as many as anyone would have in a plain round
            # robin: no one else got more than one phrase beyond it of its own choosing.
            assert len(fair) == capacity
            assert count >= min(capacity // max(len(holdings), 1), len(holding))


def pacer() -> UpstreamPacer:
    return UpstreamPacer(min_interval=5.0, max_per_window=20, address_interval=60.0, group=1.0)


def test_a_viewer_churning_gets_its_burst_then_one_restart_every_two_minutes() -> None:
    churn = pacer()
    pushes: list[float] = []
    now = 0.0
    while now < 300:
        churn.request("hog", 1, now)
        due = churn.due(now)
        assert due is not None
        if due <= now:
            assert churn.push(now) == ("hog", 1)
            pushes.append(now)
        now += 2.0
    # Its burst, 5 s apart, then one for each token back (120 s each) in the five minutes.
    assert pushes[:VIEWER_BURST] == [0.0, 6.0, 12.0]
    assert VIEWER_BURST + 2 <= len(pushes) <= VIEWER_BURST + 3, pushes


def test_a_newcomer_goes_first_and_at_once_while_a_hog_waits() -> None:
    paced = pacer()
    for t in (0.0, 6.0, 12.0):
        paced.request("hog", 1, t)
        assert paced.push(t) == ("hog", 1)
    paced.request("hog", 1, 20.0)
    assert paced.due(20.0) == pytest.approx(120.0), "its bucket is empty until a token is back"
    paced.request("newcomer", 2, 20.0)
    assert paced.due(20.0) == 20.0
    assert paced.push(20.0) == ("newcomer", 2)
    assert paced.due(20.0) is None, "the hog's change rode along"


def test_a_viewer_churning_leaves_restarts_for_the_others_at_its_address() -> None:
    """Behind one NAT: a churning viewer's own bucket runs dry before its address's does."""
    paced = pacer()
    now = 0.0
    for _ in range(20):
        paced.request("office", 1, now)
        if (due := paced.due(now)) is not None and due <= now:
            paced.push(now)
        now += 6.0
    paced.request("office", 2, now)
    assert paced.due(now) == now
    assert paced.push(now) == ("office", 2)


def test_the_viewers_of_one_address_share_its_bucket() -> None:
    paced = pacer()
    for viewer in range(ADDRESS_BURST):
        paced.request("office", viewer, viewer * 6.0)
        assert paced.push(viewer * 6.0) == ("office", viewer)
    now = ADDRESS_BURST * 6.0
    paced.request("office", 99, now)
    # Each took one of the address's six; its tokens come back one a minute, from the first.
    assert paced.due(now) == pytest.approx(60.0)


def test_repeat_changers_share_half_the_budget_and_newcomers_the_rest() -> None:
    paced = pacer()
    now = 0.0
    for n in range(10):
        paced.request(f"a{n}", n, now)
        assert paced.push(now) == (f"a{n}", n)
        now += 5.0
    paced.request("a0", 0, now)
    assert paced.due(now) == 300.0, "ten restarts in the window: repeat changers wait"
    paced.request("fresh", 100, now)
    assert paced.push(now) == ("fresh", 100), "a first change still goes at once"


def test_changes_within_the_group_join_one_restart() -> None:
    paced = pacer()
    paced.request("a", 1, 0.0)
    paced.push(0.0)
    paced.request("b", 2, 0.5)
    assert paced.due(0.5) == 0.5
    paced.push(0.5)
    paced.request("c", 3, 1.5)
    assert paced.due(1.5) == 5.0
