"""Refuse request bodies that would take far more memory to parse than they are long.

A JSON object costs the parser 60 to 250 bytes of memory for 2 to 12 bytes of body:
16 MB of ``{"line":""},`` becomes 400 MB of dicts (and several seconds of garbage
collection) before any method can look at it. ``too_many_containers`` counts the
objects and arrays of a body (brackets outside strings) without parsing it, so the
server refuses such a body with a JSON-RPC error before building it
(``max-request-containers``).
"""
from __future__ import annotations

_SLICE = 1 << 20  # bytes scanned per step: an over-full body is refused after a few


def too_many_containers(body: bytes, limit: int) -> bool:
    """Whether ``body`` holds more than ``limit`` JSON objects and arrays (0: no
    limit). Exact for JSON; any other body is left to the parser to refuse."""
    if not limit or body.count(b"{") + body.count(b"[") <= limit:
        return False  # the common case: fewer brackets in all than allowed
    # Brackets inside strings do not count. Without escaped backslashes and quotes,
    # every remaining quote opens or closes a string.
    cleaned = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    count, inside = 0, False
    for start in range(0, len(cleaned), _SLICE):
        parts = cleaned[start:start + _SLICE].split(b'"')
        outside = parts[1::2] if inside else parts[0::2]
        count += sum(part.count(b"{") + part.count(b"[") for part in outside)
        if count > limit:
            return True
        if len(parts) % 2 == 0:  # an odd number of quotes in this slice
            inside = not inside
    return False
