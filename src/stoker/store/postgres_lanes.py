"""The PostgreSQL store's lanes: the tasks through which every operation reaches the server.

The main lane runs whatever has queued up in one transaction and commits once (durably when a
client was promised anything in it); the statement lane runs claims and attempt ends one
statement each in autocommit, on a connection of its own that does not wait for the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from stoker.store.base import StoreError
from stoker.store.postgres_sql import Conn

log = logging.getLogger("stoker")

_T = TypeVar("_T")
Operation = Callable[[Conn], Awaitable[Any]]
BATCH = 512  # operations per transaction at most
RETRIES = 3  # a batch another node deadlocked with (the server aborts one side) runs again
POOL_TIMEOUT = 10.0  # seconds a batch waits for a connection before it fails


def reason(error: BaseException) -> str:
    """A psycopg error's message on one line (libpq's carry hints on lines of their own)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


@dataclass(slots=True)
class Request:
    operation: Operation
    future: asyncio.Future[Any]
    durable: bool  # a client was promised it: commit with the server's synchronous_commit


class Lane:
    """The one task that runs operations against the database: in order, many per transaction.

    An operation is an async function of the connection. It may run more than once: when one
    operation of a batch fails, the transaction is rolled back (the failure spoils only that
    operation's answer) and the others run again without it. So an operation keeps no state
    between runs but what it builds afresh, and answers only through its return value.
    """

    def __init__(self, pool: AsyncConnectionPool[Conn], where: str) -> None:
        self.pool = pool
        self.where = where
        self.requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name="stoker-postgres")

    def submit(self, operation: Callable[[Conn], Awaitable[_T]], durable: bool) -> asyncio.Future[_T]:
        if self.closing:
            raise StoreError("the store is closed")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait(Request(operation, future, durable))
        return future

    async def close(self) -> None:
        """Run what was submitted, then stop."""
        self.closing = True
        self.requests.put_nowait(None)
        await self.task

    async def _run(self) -> None:
        try:
            while (batch := await self._next_batch()) is not None:
                await self._run_batch(batch)
        finally:  # cancelled, or a bug: whoever still waits learns it rather than hanging
            while not self.requests.empty():
                request = self.requests.get_nowait()
                if request is not None and not request.future.done():
                    request.future.set_exception(StoreError("the store was closed"))

    async def _next_batch(self) -> list[Request] | None:
        first = await self.requests.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH and not self.requests.empty():
            item = self.requests.get_nowait()
            if item is None:
                self.requests.put_nowait(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    async def _run_batch(self, batch: list[Request]) -> None:
        failed: dict[int, BaseException] = {}  # operations that failed on their own
        values: dict[int, Any] = {}
        problem: StoreError | None = None
        for attempt in range(1, RETRIES + 1):
            try:
                async with self.pool.connection(timeout=POOL_TIMEOUT) as conn:
                    values = await self._transaction(conn, batch, failed)
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:  # with another node: again
                problem = StoreError(f"PostgreSQL ({self.where}): {reason(e)}")
                if attempt < RETRIES:
                    log.info("store: %s; running the batch again", reason(e))
                    continue
            except PoolTimeout as e:
                problem = StoreError(f"PostgreSQL ({self.where}): no connection: {reason(e)}")
            except psycopg.Error as e:  # the server or the connection: nothing of this batch holds
                problem = StoreError(f"PostgreSQL ({self.where}): {reason(e)}")
                await self.pool.check()  # drop connections that broke with it: the next batch reconnects
            else:
                problem = None
            break
        for index, request in enumerate(batch):
            if request.future.done():  # the caller gave up waiting
                continue
            if index in failed:
                request.future.set_exception(failed[index])
            elif problem is not None:
                request.future.set_exception(problem)
            else:
                request.future.set_result(values[index])

    async def _transaction(
        self, conn: Conn, batch: list[Request], failed: dict[int, BaseException]
    ) -> dict[int, Any]:
        while True:
            durable = any(request.durable for index, request in enumerate(batch) if index not in failed)
            await conn.execute("BEGIN" if durable else "BEGIN; SET LOCAL synchronous_commit = off")
            values: dict[int, Any] = {}
            for index, request in enumerate(batch):
                if index in failed:
                    continue
                try:
                    values[index] = await request.operation(conn)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise  # the connection or the server, not this operation
                except Exception as e:
                    failed[index] = e
                    break
            else:
                await conn.execute("COMMIT")
                return values
            await conn.execute("ROLLBACK")  # the failed one's effects, and the others': run those again


class StatementLane:
    """The lane of the operations that are one statement each and need only survive the
    daemon's death, not the server's (claims and attempt ends): each runs on its own in
    autocommit, in order, on a connection of the lane's own whose commits do not wait for the
    disk (synchronous_commit = off for its session). One round trip each, where the main lane's
    transaction takes three; and a claim never waits behind what the main lane is committing.
    The connection is not the pool's: its session setting must never reach a durable commit.
    """

    def __init__(self, conninfo: str, where: str) -> None:
        self.conninfo = conninfo
        self.where = where
        self.requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self.closing = False
        self.conn: Conn | None = None
        self.task = asyncio.create_task(self._run(), name="stoker-postgres-statements")

    def submit(self, operation: Callable[[Conn], Awaitable[_T]]) -> asyncio.Future[_T]:
        if self.closing:
            raise StoreError("the store is closed")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait(Request(operation, future, durable=False))
        return future

    async def close(self) -> None:
        """Run what was submitted, then stop."""
        self.closing = True
        self.requests.put_nowait(None)
        await self.task

    async def _run(self) -> None:
        try:
            while (request := await self.requests.get()) is not None:
                await self._run_one(request)
        finally:  # cancelled, or a bug: whoever still waits learns it rather than hanging
            while not self.requests.empty():
                left = self.requests.get_nowait()
                if left is not None and not left.future.done():
                    left.future.set_exception(StoreError("the store was closed"))
            if self.conn is not None:
                await self.conn.close()

    async def _connection(self) -> Conn:
        if self.conn is None or self.conn.broken or self.conn.closed:
            if self.conn is not None:
                await self.conn.close()
                self.conn = None
            conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
            await conn.execute("SET synchronous_commit = off")
            self.conn = conn
        return self.conn

    async def _run_one(self, request: Request) -> None:
        error: BaseException
        for attempt in range(1, RETRIES + 1):
            try:
                value = await request.operation(await self._connection())
            except (errors.DeadlockDetected, errors.SerializationFailure) as e:  # with another node: again
                error = StoreError(f"PostgreSQL ({self.where}): {reason(e)}")
                if attempt < RETRIES:
                    continue
            except (
                psycopg.Error
            ) as e:  # the server or the connection (the next one reconnects), or the statement
                error = StoreError(f"PostgreSQL ({self.where}): {reason(e)}")
            except Exception as e:  # the operation's own
                error = e
            else:
                if not request.future.done():
                    request.future.set_result(value)
                return
            break
        if not request.future.done():
            request.future.set_exception(error)
