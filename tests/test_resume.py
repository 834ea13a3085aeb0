"""Where a Jetstream connection resumes: pure decisions, from values alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pats_trio.upstream.bluesky.resume import MAX_SKIP_US, Attempt, ResumePlan, Skip

REWIND = 5_000_000
LIMIT = 1024
LARGE = 8192
P = 1_700_000_000_000_000
"""The latest ``time_us`` read when connections start failing."""


def plan() -> ResumePlan:
    return ResumePlan(rewind_us=REWIND, max_message_bytes=LIMIT, large_message_bytes=LARGE)


def test_a_connection_that_made_progress_resumes_with_the_rewind() -> None:
    resume = plan()
    assert resume.next_attempt(None) == Attempt(None, LIMIT), "nothing read: from now"
    for last in (P, P + 10, P + 5_000_000):
        assert resume.ended(last, received=True, too_big=False) is None
        assert resume.next_attempt(last) == Attempt(last - REWIND, LIMIT)
    assert resume.repeats == 0
    assert plan().next_attempt(3) == Attempt(0, LIMIT), "never before time began"


def test_our_limit_closing_a_connection_makes_the_next_one_read_large_until_it_gets_past() -> None:
    resume = plan()
    resume.ended(P, received=True, too_big=True)
    assert resume.next_attempt(P) == Attempt(P - REWIND, LARGE), "the rewind loses nothing"
    # A network error before it got there: still large, still from the same point.
    assert resume.ended(P, received=False, too_big=False) is None
    assert resume.next_attempt(P) == Attempt(P - REWIND, LARGE)
    # It read the big event (its time_us is now the latest) and later ended for another reason.
    assert resume.ended(P + 7, received=True, too_big=False) is None
    assert resume.next_attempt(P + 7) == Attempt(P + 7 - REWIND, LIMIT)


def test_the_same_point_failing_again_moves_the_resume_point_forward_every_time() -> None:
    """The issue: the rewind replays the event that ended the connection, forever. Here each
    connection replays up to P (so it read messages) and ends there."""
    resume = plan()
    assert resume.ended(P, received=True, too_big=False) is None
    assert resume.next_attempt(P) == Attempt(P - REWIND, LIMIT)
    assert resume.ended(P, received=True, too_big=False) is None
    assert resume.next_attempt(P) == Attempt(P + 1, LIMIT), "past P, without the rewind"
    cursors = []
    for repeats in range(2, 15):
        # Started past P, so ending there with nothing read is the same failure again.
        skip = resume.ended(P, received=False, too_big=False)
        assert skip is not None
        assert (skip.stuck_at, skip.repeats) == (P, repeats)
        attempt = resume.next_attempt(P)
        assert attempt.cursor == skip.resume_at
        cursors.append(skip.resume_at - P)
    assert cursors[:4] == [1_000, 2_000, 4_000, 8_000]
    assert cursors[-1] == MAX_SKIP_US
    assert cursors == sorted(cursors)
    # Reading past the step ends the episode: the next failure rewinds as usual.
    assert resume.ended(P + 1_500, received=True, too_big=False) is None
    assert resume.repeats == 0
    assert resume.next_attempt(P + 1_500) == Attempt(P + 1_500 - REWIND, LIMIT)


def test_a_host_that_accepts_and_closes_at_once_never_makes_us_skip() -> None:
    """No message read, not our limit, and started before the point: nothing shows that an event
    is to blame, so the resume point stays where it was, rewind included."""
    resume = plan()
    resume.ended(P, received=True, too_big=False)
    for _ in range(50):
        assert resume.ended(P, received=False, too_big=False) is None
        assert resume.next_attempt(P) == Attempt(P - REWIND, LIMIT)
    assert resume.repeats == 0


def test_an_event_too_big_even_for_the_large_limit_is_stepped_over() -> None:
    resume = plan()
    resume.ended(P, received=True, too_big=True)
    assert resume.ended(P, received=True, too_big=True) is None
    assert resume.next_attempt(P) == Attempt(P + 1, LARGE)
    assert resume.ended(P, received=False, too_big=True) == Skip(P, P + 1_000, 2)
    assert resume.next_attempt(P) == Attempt(P + 1_000, LARGE)


def test_with_nothing_read_yet_every_connection_starts_from_now() -> None:
    resume = plan()
    assert resume.ended(None, received=True, too_big=True) is None
    assert resume.ended(None, received=False, too_big=False) is None
    assert resume.next_attempt(None) == Attempt(None, LARGE)
    assert resume.repeats == 0


endings = st.lists(
    st.tuples(st.integers(0, 3), st.booleans(), st.booleans()), min_size=1, max_size=40
)


@given(endings)
def test_no_resume_point_is_asked_for_after_it_failed_the_same_way_twice(
    script: list[tuple[int, bool, bool]],
) -> None:
    """Whatever the endings, the attempt after two failures that got to the same point starts
    past it; and the resume point never goes back before the last rewind."""
    resume = plan()
    last: int | None = None
    asked: list[int | None] = []
    reached: dict[int, int] = {}
    for advance, received, too_big in script:
        attempt = resume.next_attempt(last)
        asked.append(attempt.cursor)
        if advance:
            last = (last or P) + advance
        started_past = attempt.cursor is not None and last is not None and attempt.cursor > last
        resume.ended(last, received=received, too_big=too_big)
        if last is not None and (received or too_big or started_past):
            reached[last] = reached.get(last, 0) + 1
        following = resume.next_attempt(last).cursor
        if last is None:
            assert following is None
            continue
        assert following is not None
        assert following >= last - REWIND
        if reached.get(last, 0) >= 2 and not advance:
            assert following > last
