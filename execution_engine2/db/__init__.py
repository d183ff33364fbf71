"""Every database operation: the JobStore interface and its Mongo and SQLite stores."""
from execution_engine2.db.store import JobQuery, JobStore, LogLine, Record, Transition, TransitionResult

__all__ = ["JobQuery", "JobStore", "LogLine", "Record", "Transition", "TransitionResult"]
