"""stoker keeps a server's background work alive."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `from stoker import Client` without making `import stoker` (every CLI run) pay for it
    if name in ("Client", "ClientError", "NotRunning", "task"):
        from stoker import client

        return getattr(client, name)
    raise AttributeError(f"module 'stoker' has no attribute {name!r}")
