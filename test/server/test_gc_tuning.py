"""gc-gen0-threshold: a serving worker freezes its start-up objects and raises the
young-generation threshold; 0 leaves Python's defaults. Checked in a fresh interpreter
(the settings are process-wide)."""
from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
from execution_engine2.config import Config
from execution_engine2.server.gc_tuning import tune_gc
defaults = gc.get_threshold()
tuned = tune_gc(Config.standalone(**{"gc-gen0-threshold": sys.argv[1]}))
print(json.dumps({"tuned": tuned, "defaults": defaults, "now": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(threshold: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, threshold], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def test_the_threshold_is_raised_and_start_up_objects_are_frozen():
    result = _probe("20000")
    assert result["tuned"] is True
    assert result["now"] == [20000, *result["defaults"][1:]]
    assert result["frozen"] > 1000


def test_zero_keeps_pythons_defaults():
    result = _probe("0")
    assert result["tuned"] is False
    assert result["now"] == result["defaults"]
    assert result["frozen"] == 0
