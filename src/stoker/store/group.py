"""Group commit, the pure part: which requests of a batch are answered ok, and with what.

The SQLite store's writer thread takes whatever requests have queued up while it was busy (no
timer: a lone request is taken at once, alone) and runs them in one transaction with one
commit, so producers that arrive together share one flush of the disk. What must hold:

- A request is answered ok only once the transaction that holds its effect has committed: a
  201 means the job is on disk.
- One request's failure (a duplicate key, a guard that no longer holds, a bug) undoes only its
  own effect and answers only it, with its error; the others of the batch go on and commit.
- If the transaction itself fails (the disk is full, the file is gone, the commit is refused),
  nothing of the batch holds, and every request of it is answered with that error: none is
  acknowledged, none is left without an answer (`TransactionFailed`).

`run_group` decides; the transaction is passed in (`Transaction`: SQLite in the store, a model
in tests/test_group_commit.py), so the rules are tested exhaustively without a disk. Requests
are applied in batch order. A run of requests that `run_length` says may go together (starts
and ends of attempts: one executemany per kind) is first applied at once; if that fails it is
undone and applied again one by one. A request applied on its own is marked (a savepoint)
first, so that its failure can be undone alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
Answer = tuple[bool, Any]  # ok and the value, or not ok and the exception


class Transaction(Protocol[T_contra]):
    """What `run_group` needs of the store; each call may raise. An exception from `apply` or
    `apply_run` is the request's (or the run's) own failure; from anything else, the
    transaction's."""

    def begin(self) -> None: ...

    def mark(self) -> None: ...  # a savepoint

    def undo(self) -> None: ...  # back to the mark, and drop it

    def keep(self) -> None: ...  # drop the mark, keeping what was done since

    def apply(self, request: T_contra) -> Any: ...  # its answer's value

    def apply_run(self, run: Sequence[T_contra]) -> list[Any] | None: ...  # None: go one by one

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class TransactionFailed(Exception):
    """The answer of every request of a batch whose transaction failed; `cause` says why."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def run_group(
    batch: Sequence[T], tx: Transaction[T], run_length: Callable[[Sequence[T], int], int]
) -> list[Answer]:
    """Apply `batch` in one transaction and commit it; one answer per request, in order.
    `run_length(batch, at)` is where the run of requests that may be applied together, which
    begins at `at`, ends (`at` itself: `batch[at]` goes on its own)."""
    try:
        tx.begin()
        answers: list[Answer] = []
        at = 0
        while at < len(batch):
            end = run_length(batch, at)
            if end > at:
                answers += _run(batch[at:end], tx)
                at = end
            else:
                answers.append(_one(batch[at], tx))
                at += 1
        tx.commit()
    except Exception as e:  # the transaction failed: nothing of the batch holds
        try:
            tx.rollback()
        except Exception:  # already ended by the failure itself, or the file is gone
            pass
        return [(False, TransactionFailed(e))] * len(batch)
    return answers


def _run(run: Sequence[T], tx: Transaction[T]) -> list[Answer]:
    """A run at once; else undone, and one by one."""
    tx.mark()
    try:
        values = tx.apply_run(run)
    except Exception:  # which request failed is for the one-by-one path to say
        values = None
    if values is not None and len(values) == len(run):
        tx.keep()
        return [(True, value) for value in values]
    tx.undo()
    return [_one(request, tx) for request in run]


def _one(request: T, tx: Transaction[T]) -> Answer:
    """One request on its own: its failure is undone and answers it alone."""
    tx.mark()
    try:
        value = tx.apply(request)
    except Exception as e:
        tx.undo()
        return (False, e)
    tx.keep()
    return (True, value)
