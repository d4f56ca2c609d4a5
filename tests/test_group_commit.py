"""Group commit's rules (stoker.store.group), against a model of a transaction with savepoints
in which any request, any run and any step of the transaction may fail.

What must hold whatever fails: every request gets exactly one answer; a request is answered ok
if and only if its effect is in what was committed (nothing acknowledged that is not on disk,
nothing on disk answered as failed, so a client's retry never doubles a job); one request's
failure touches no other's answer; a failed transaction acknowledges nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.store.group import TransactionFailed, run_group


@dataclass(frozen=True)
class Req:
    id: int
    change: bool  # may go in a run with its neighbours (a start or an end of an attempt)
    fails: bool  # its own apply raises
    partial: bool  # and leaves part of its effect behind first (the savepoint must undo it)
    spoils_run: bool  # applied in a run, the run fails (a guard that no longer holds)


class ItemError(Exception):
    pass


class StepError(Exception):
    pass


class Model:
    """A transaction over a set of ids: `work` is what the open transaction holds, `marks` its
    savepoints, `committed` what survives. `fault_at`: the number of the transaction step
    (begin, mark, undo, keep, commit) that fails, if any."""

    def __init__(self, fault_at: int | None) -> None:
        self.committed: frozenset[int] = frozenset({-1})  # an earlier commit, untouched
        self.work: set[int] | None = None
        self.marks: list[set[int]] = []
        self.steps = 0
        self.fault_at = fault_at

    def _step(self) -> None:
        self.steps += 1
        if self.steps == self.fault_at:
            raise StepError(f"step {self.steps}")
        assert self.work is not None or self.steps == 1

    def begin(self) -> None:
        self._step()
        self.work = set(self.committed)

    def mark(self) -> None:
        self._step()
        assert self.work is not None
        self.marks.append(set(self.work))

    def undo(self) -> None:
        self._step()
        self.work = self.marks.pop()

    def keep(self) -> None:
        self._step()
        self.marks.pop()

    def apply(self, request: Req) -> int:
        assert self.work is not None and self.marks, "applied outside a savepoint"
        if request.fails:
            if request.partial:
                self.work.add(request.id)
            raise ItemError(request.id)
        self.work.add(request.id)
        return request.id

    def apply_run(self, run: Sequence[Req]) -> list[int] | None:
        assert self.work is not None and self.marks, "run outside a savepoint"
        for request in run:
            self.work.add(request.id)  # (as executemany would, before the guard's count says no)
        if any(r.spoils_run for r in run):
            return None
        if any(r.fails for r in run):
            raise ItemError("run")
        return [r.id for r in run]

    def commit(self) -> None:
        self._step()
        assert self.work is not None and not self.marks, "committed with a savepoint open"
        self.committed = frozenset(self.work)
        self.work = None

    def rollback(self) -> None:
        self.work = None
        self.marks = []


def runs(batch: Sequence[Req], at: int) -> int:
    end = at
    while end < len(batch) and batch[end].change:
        end += 1
    return end


requests = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=12
).map(
    lambda rows: [
        Req(i, change, fails, partial and fails, spoils)
        for i, (change, fails, partial, spoils) in enumerate(rows)
    ]
)


@settings(max_examples=500, deadline=None)
@given(batch=requests, fault_at=st.none() | st.integers(min_value=1, max_value=60))
def test_ok_exactly_when_committed(batch: list[Req], fault_at: int | None) -> None:
    tx = Model(fault_at)
    answers = run_group(batch, tx, runs)
    assert len(answers) == len(batch)
    committed = tx.committed - {-1}
    for request, (ok, value) in zip(batch, answers, strict=True):
        assert ok == (request.id in committed), (request, ok, committed)
        if ok:
            assert value == request.id
        else:
            assert isinstance(value, ItemError | TransactionFailed)
    transaction_failed = any(isinstance(v, TransactionFailed) for _, v in answers)
    if transaction_failed:
        assert all(isinstance(v, TransactionFailed) for _, v in answers)
        assert committed == set()  # nothing of the batch holds
        assert tx.committed == frozenset({-1})  # and what was there before is untouched
    else:
        assert fault_at is None or fault_at > tx.steps
        # one request's failure is its own: the others commit
        assert committed == {r.id for r in batch if not r.fails}


def test_a_lone_request_is_one_transaction() -> None:
    tx = Model(None)
    assert run_group([Req(7, False, False, False, False)], tx, runs) == [(True, 7)]
    assert tx.committed == {-1, 7}
    assert tx.steps == 4  # begin, mark, keep, commit


def test_a_failed_commit_acknowledges_nothing() -> None:
    batch = [Req(i, i % 2 == 0, False, False, False) for i in range(6)]
    probe = Model(None)
    run_group(batch, probe, runs)
    tx = Model(probe.steps)  # the last step: the commit
    answers = run_group(batch, tx, runs)
    assert all(not ok and isinstance(v, TransactionFailed) for ok, v in answers)
    assert tx.committed == {-1}
