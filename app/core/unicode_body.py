"""Find lone UTF-16 surrogates in JSON text (JSON allows them, UTF-8 cannot)."""

from __future__ import annotations

import re

# A `\uD800`–`\uDFFF` escape and the run of backslashes before it (an even run is text).
_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def has_lone_surrogate(body: bytes | bytearray) -> bool:
    """Return whether a JSON text holds a surrogate escape that is not part of a pair."""
    if b"\\u" not in body:
        return False
    pending: int | None = None  # where the low half of an open pair must start
    for match in _ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue
        start = match.end(1) - 1
        if int(match.group(2), 16) <= 0xDBFF:
            if pending is not None:
                return True
            pending = match.end()
        else:
            if pending != start:
                return True
            pending = None
    return pending is not None
