"""Fair shares as pure functions: the phrase budget and the pacing of filter restarts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pats_trio.shares import ADDRESS_BURST, UpstreamPacer, fair_union


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


def test_an_address_churning_gets_its_burst_then_one_restart_a_minute() -> None:
    churn = pacer()
    pushes: list[float] = []
    now = 0.0
    while now < 300:
        churn.request("hog", now)
        due = churn.due(now)
        assert due is not None
        if due <= now:
            churn.push(now)
            pushes.append(now)
        now += 2.0
    # The burst, then one for each token back (60 s each) in the rest of the five minutes.
    assert ADDRESS_BURST + 3 <= len(pushes) <= ADDRESS_BURST + 5, pushes


def test_a_newcomer_goes_first_and_at_once_while_a_hog_waits() -> None:
    paced = pacer()
    for t in (0.0, 6.0, 12.0):
        paced.request("hog", t)
        assert paced.push(t) == "hog"
    paced.request("hog", 20.0)
    assert paced.due(20.0) == pytest.approx(60.0), "its bucket is empty until a token is back"
    paced.request("newcomer", 20.0)
    assert paced.due(20.0) == 20.0
    assert paced.push(20.0) == "newcomer"
    assert paced.due(20.0) is None, "the hog's change rode along"


def test_repeat_changers_share_half_the_budget_and_newcomers_the_rest() -> None:
    paced = pacer()
    now = 0.0
    for n in range(10):
        paced.request(f"a{n}", now)
        assert paced.push(now) == f"a{n}"
        now += 5.0
    paced.request("a0", now)
    assert paced.due(now) == 300.0, "ten restarts in the window: repeat changers wait"
    paced.request("fresh", now)
    assert paced.push(now) == "fresh", "a first change still goes at once"


def test_changes_within_the_group_join_one_restart() -> None:
    paced = pacer()
    paced.request("a", 0.0)
    paced.push(0.0)
    paced.request("b", 0.5)
    assert paced.due(0.5) == 0.5
    paced.push(0.5)
    paced.request("c", 1.5)
    assert paced.due(1.5) == 5.0
