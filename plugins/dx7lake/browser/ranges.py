"""HTTP byte ranges (RFC 9110 §14) for audio served from memory, so players can seek.

One range per request: a multi-range request is answered with its first range, which
RFC 9110 allows and which every audio element is content with.
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    """The range lies outside the object; answer 416 with ``Content-Range: bytes */size``."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive ``(first, last)`` byte positions asked for, or None for the whole object.

    A header that is not a valid bytes range is ignored (the whole object is sent), as the
    RFC asks; a valid one that starts past the end raises ``RangeNotSatisfiable``.
    """
    if not header:
        return None
    match = _RANGE.match(header.split(",")[0].strip())
    if not match or match.groups() == ("", ""):
        return None
    first_s, last_s = match.groups()
    if first_s == "":  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - length), size - 1
    first = int(first_s)
    if last_s != "" and int(last_s) < first:  # not a valid range-spec: ignored, like no header
        return None
    if first >= size:
        raise RangeNotSatisfiable(header)
    return first, size - 1 if last_s == "" else min(int(last_s), size - 1)
