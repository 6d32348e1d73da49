"""Ids a client sends back are checked first, by full match, and never echoed at length."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.delegation import Delegator
from server.errors import InvalidInputError, UnknownJobError, UnknownSpecialistError
from server.jobs import CANCEL_KIND
from server.threads import check_thread_id

HUGE = "j" * 200_000
ECHO_LIMIT = 400  # a message names the id's shape and what to pass; it never carries the id itself at length


async def test_a_huge_job_id_with_cancel_is_refused_before_the_store_is_written(
    make_delegator: Callable[..., Delegator],
) -> None:
    delegator = make_delegator()
    with pytest.raises(InvalidInputError) as refused:
        await delegator.job_result(HUGE, 0, True)
    assert len(str(refused.value)) < ECHO_LIMIT and "job_id" in str(refused.value)
    assert delegator.store.recent(CANCEL_KIND) == [], "a cancel row was written for an id no job can have"


async def test_a_well_formed_unknown_job_id_is_still_unknown(make_delegator: Callable[..., Delegator]) -> None:
    with pytest.raises(UnknownJobError, match="job-0123456789abcdef"):
        await make_delegator().job_result("job-0123456789abcdef")


@pytest.mark.parametrize("thread_id", ["th_x\n", "th_x\n\n", "th x", "", "t" * 65])
def test_a_thread_id_must_match_in_full(thread_id: str) -> None:
    with pytest.raises(InvalidInputError, match="thread_id"):
        check_thread_id(thread_id)


async def test_a_huge_thread_id_is_refused_without_being_echoed(make_delegator: Callable[..., Delegator]) -> None:
    with pytest.raises(InvalidInputError) as refused:
        await make_delegator().delegate("task", thread_id=HUGE)
    assert len(str(refused.value)) < ECHO_LIMIT


async def test_feedback_on_a_huge_call_id_or_specialist_name_is_refused_briefly(
    make_delegator: Callable[..., Delegator],
) -> None:
    delegator = make_delegator(feedback=True)
    with pytest.raises(InvalidInputError) as refused:
        await delegator.give_feedback(call_id=HUGE, good=False, should_be="coder")
    assert len(str(refused.value)) < ECHO_LIMIT and "call_id" in str(refused.value)
    with pytest.raises(InvalidInputError) as refused:
        await delegator.give_feedback(task="a task", good=False, should_be=HUGE)
    assert len(str(refused.value)) < ECHO_LIMIT


def test_an_unknown_specialist_name_is_echoed_cut_short(make_delegator: Callable[..., Delegator]) -> None:
    with pytest.raises(UnknownSpecialistError) as unknown:
        make_delegator().catalog.get(HUGE)
    assert len(str(unknown.value)) < ECHO_LIMIT and "coder" in str(unknown.value)
