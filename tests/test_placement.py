"""Placement (`nodes`) and singleton lease decisions: the pure core, without processes or a store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.supervise.placement import (
    EXPIRY_SLACK,
    FENCE_KILL,
    FENCE_STOP,
    LeaseBook,
    Renewal,
    not_placed_reason,
    placed_here,
    releasable,
)

LEASE = 30.0


@pytest.mark.parametrize(
    ("patterns", "node", "placed"),
    [
        ((), "anything", True),
        (("web-*",), "web-1", True),
        (("web-*",), "web-", True),
        (("web-*",), "worker-1", False),
        (("web-*",), "WEB-1", False),  # case matters: node names are compared as written
        (("web-?",), "web-12", False),
        (("web-[12]",), "web-2", True),
        (("web-[12]",), "web-3", False),
        (("web-[!1]",), "web-2", True),
        (("a", "b"), "b", True),
        (("db.internal",), "db.internal", True),
        (("db.internal",), "dbxinternal", False),  # a dot is a dot, not a regex
    ],
)
def test_placed_here(patterns: tuple[str, ...], node: str, placed: bool) -> None:
    assert placed_here(patterns, node) is placed


def test_not_placed_reason_names_the_node_and_patterns() -> None:
    assert not_placed_reason(("web-*", "api"), "db-1") == 'not placed on node db-1 (nodes = ["web-*", "api"])'


def renewal(sent_at: float, **holders: str) -> Renewal:
    return Renewal(sent_at, holders, {name: LEASE for name in holders})


def test_the_holder_runs_it_until_the_fence() -> None:
    book = LeaseBook("a", LEASE)
    assert not book.mine("cron", 0.0)
    assert book.reason("cron", 0.0) == "singleton: waiting for its lease"
    book.renewed(renewal(100.0, cron="a"), ["cron"], now=100.2)
    assert book.mine("cron", 100.2) and book.reason("cron", 100.2) is None
    assert book.holder("cron", 100.2) == "a"
    assert book.fence_times() == (100.0 + FENCE_STOP * LEASE, 100.0 + FENCE_KILL * LEASE)
    # renewals fail: it runs on until 2/3 of the lease after the last good one was *sent*
    book.failed("connection refused")
    assert book.mine("cron", 100.0 + FENCE_STOP * LEASE - 0.001)
    assert not book.mine("cron", 100.0 + FENCE_STOP * LEASE)
    reason = book.reason("cron", 121.0)
    assert reason is not None and reason.startswith(
        "singleton: lease not renewed for 21.0s: connection refused"
    )
    assert book.holder("cron", 121.0) is None  # fenced: it may not say it runs it
    # the store answers again and the lease is still ours: it runs again
    book.renewed(renewal(125.0, cron="a"), ["cron"], now=125.1)
    assert book.mine("cron", 125.1)


def test_the_fence_kills_before_the_lease_can_lapse_elsewhere() -> None:
    # the server stamps expiry = (its now) + LEASE, and its now is after our send: our kill
    # deadline is strictly before any other node can take the lease
    assert FENCE_STOP < FENCE_KILL < 1
    assert pytest.approx(5.0) == (1 - FENCE_KILL) * LEASE  # seconds of margin for the kill and clock rates
    # two renewals (every third of the lease) must fail before the stop
    assert FENCE_STOP >= 2 / 3


def test_another_holder_is_shown_and_not_run() -> None:
    book = LeaseBook("a", LEASE)
    book.renewed(renewal(10.0, cron="b"), ["cron", "report"], now=10.1)
    assert book.reason("cron", 10.1) == "singleton: runs on b"
    assert book.holder("cron", 10.1) == "b"
    assert book.reason("report", 10.1) == "singleton: waiting for its lease"
    assert book.fence_times() is None  # it holds nothing: nothing to fence
    assert book.decided("cron") and book.decided("report") and not book.decided("other")


def test_a_store_that_never_answered_is_said() -> None:
    book = LeaseBook("a", LEASE)
    book.failed("PostgreSQL (database x): connection refused")
    assert book.reason("cron", 1.0) == (
        "singleton: waiting for its lease (the store did not answer: PostgreSQL (database x): connection refused)"
    )


def test_next_renewal_is_a_third_of_the_lease_or_just_after_a_lapse() -> None:
    book = LeaseBook("a", LEASE)
    book.renewed(Renewal(0.0, {"cron": "b"}, {"cron": 4.0}), ["cron"], now=1.0)
    # b's lease lapses at about 1.0 + 4.0: try just after, if we want it
    assert book.next_renewal(1.0, ["cron"]) == pytest.approx(5.0 + EXPIRY_SLACK)
    assert book.next_renewal(1.0, []) == pytest.approx(1.0 + LEASE / 3)
    book.renewed(Renewal(20.0, {"cron": "b"}, {"cron": 29.0}), ["cron"], now=20.0)
    assert book.next_renewal(20.0, ["cron"]) == pytest.approx(20.0 + LEASE / 3)
    book.failed("down")  # sooner after a failure
    assert book.next_renewal(21.0, []) == pytest.approx(21.0 + LEASE / 6)


def test_releasable_only_when_unwanted_and_at_rest() -> None:
    book = LeaseBook("a", LEASE)
    book.renewed(renewal(0.0, cron="a", report="a", mail="b"), ["cron", "report", "mail"], now=0.0)
    assert releasable(book, wanted={"cron", "report"}, resting={"cron", "report", "mail"}) == []
    assert releasable(book, wanted={"cron"}, resting={"cron"}) == []  # report still stopping
    assert releasable(book, wanted={"cron"}, resting={"report", "mail"}) == ["report"]  # never b's


@given(
    sent=st.floats(0, 1e6),
    delay=st.floats(0, 1e3),
    lease=st.floats(1, 3600),
)
def test_a_node_never_runs_a_lease_past_the_fence(sent: float, delay: float, lease: float) -> None:
    """Whatever the timing, `mine` holds only before sent + FENCE_STOP * lease."""
    book = LeaseBook("a", lease)
    book.renewed(Renewal(sent, {"x": "a"}, {"x": lease}), ["x"], now=sent)
    now = sent + delay
    assert book.mine("x", now) == (now < sent + FENCE_STOP * lease)
