"""Garbage-collector settings of a serving process (``gc-gen0-threshold``).

A worker holds tens of thousands of long-lived objects after start (modules, the
app, clients, the catalog), and a 10,000-job call allocates hundreds of thousands
of container objects that all survive until the answer is written. With Python's
defaults (a young collection every 700 net allocations, a full one every 100 young
ones) such a call spends most of its time in the collector tracing the same objects
again and again, and its cost per job grows with its size. Freezing what start-up
built (``gc.freeze``) takes it out of every later collection; a larger first
threshold makes the collections of a big call ten times fewer. Memory is still
reclaimed by reference counting at once; only cycles wait for the next collection.
"""
from __future__ import annotations

import gc
import logging

from execution_engine2.config import Config

logger = logging.getLogger(__name__)

def tune_gc(config: Config) -> bool:
    """Collect once, freeze the survivors and raise the young-generation threshold to
    ``gc-gen0-threshold``; with 0 leave Python's defaults. True when tuned. Call after
    the app and its background threads are built (``gunicorn_conf.post_worker_init``)."""
    threshold = config.gc_gen0_threshold
    if threshold <= 0:
        return False
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    logger.debug("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
    return True
