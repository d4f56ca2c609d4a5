"""Hooks for the schemathesis run in test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.hook
def map_query(ctx: object, query: dict | None) -> dict | None:  # type: ignore[type-arg]
    # `wait=S` holds a request open until the job finishes (up to 300 s): answer quickly instead,
    # the long-poll itself is tested elsewhere.
    if query and "wait" in query:
        query["wait"] = "0.1"
    return query
