"""stoker keeps a server's background work alive."""

from stoker.about import __version__ as __version__  # (docs/layers.md: why it lives there)


def __getattr__(name: str) -> object:
    # `from stoker import Client` without making `import stoker` (every CLI run) pay for it
    if name in ("Client", "ClientError", "NotRunning", "task"):
        from stoker import client

        return getattr(client, name)
    raise AttributeError(f"module 'stoker' has no attribute {name!r}")
