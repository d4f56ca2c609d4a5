"""stoker keeps a server's background work alive."""

__version__ = "0.1.0"
