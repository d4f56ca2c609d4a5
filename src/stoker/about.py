"""What this stoker is: its version. A leaf every layer may read; the root package re-exports
it (`stoker.__version__`), but the root is the public façade at the top (its lazy `from stoker
import Client`), so the modules below read it here (docs/layers.md)."""

__version__ = "0.1.0"
