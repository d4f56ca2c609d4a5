"""Where jobs, their attempts and queue state live: the Store protocol and its backends."""

from stoker.store.base import (
    Attempt,
    AttemptEnd,
    Job,
    NewJob,
    NodeRecord,
    QueueCounts,
    SlotRecord,
    Store,
    StoreError,
)

__all__ = [
    "Attempt",
    "AttemptEnd",
    "Job",
    "NewJob",
    "NodeRecord",
    "QueueCounts",
    "SlotRecord",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(url: str, state_dir: str) -> Store:
    """The store a `[daemon] store` setting names (not yet opened: `await store.open()`)."""
    if url == "sqlite":
        import os

        from stoker import names
        from stoker.store.sqlite import SqliteStore

        return SqliteStore(os.path.join(state_dir, names.DATABASE))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from stoker.store.postgres import PostgresStore
        except ImportError as e:  # the optional extra is not installed
            raise StoreError(
                f"the PostgreSQL store needs {e.name or 'psycopg'}, which is not installed: "
                "pip install 'stoker[postgres]'"
            ) from None
        return PostgresStore(url)
    raise StoreError('[daemon] store: expected "sqlite" or a "postgresql://…" URL')
