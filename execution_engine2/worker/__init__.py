"""The local worker (``ee2 worker``): runs standalone jobs as ``ee2-runner`` subprocesses."""
