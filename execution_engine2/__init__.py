"""execution_engine2: KBase's job execution service (JSON-RPC over HTTP)."""

__version__ = "0.0.15"
