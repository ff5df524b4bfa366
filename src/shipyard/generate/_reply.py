"""Model replies: the format a model is asked for, and a defensive parser of what came back.

A reply is untrusted text. Every file must appear as a header line ``### FILE: <name>``
followed by one fenced block; anything that does not parse into exactly the job kind's
output files is a :class:`MalformedReply` — a failed attempt, fed back to the next one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shipyard.errors import MalformedReply

__all__ = ["REPLY_FORMAT", "MalformedReply", "parse_files"]

REPLY_FORMAT = """\
Reply with the complete content of every requested file and nothing else. For each file,
write a line `### FILE: <file name>` and then the content in one fenced code block:

### FILE: example.py
```python
print("hello")
```

Use a longer fence (````) when the content itself contains ```. No commentary, no other
files."""

_HEADER = re.compile(r"^#{2,4}\s*FILE:\s*`?([^`\n]+?)`?\s*$", re.MULTILINE)
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,})[^\n`]*\n", re.MULTILINE)


def parse_files(reply: str, expected: Sequence[str]) -> dict[str, str]:
    """The files in ``reply``; MalformedReply says precisely what is wrong with it."""
    if not reply.strip():
        raise MalformedReply("the model's reply is empty", hint="the next attempt asks again")
    headers = list(_HEADER.finditer(reply))
    if not headers:
        raise MalformedReply(
            "the reply has no '### FILE: <name>' header", hint="follow the reply format"
        )
    files: dict[str, str] = {}
    for index, header in enumerate(headers):
        name = header.group(1).strip()
        end = headers[index + 1].start() if index + 1 < len(headers) else len(reply)
        section = reply[header.end() : end]
        opening = _FENCE_OPEN.search(section)
        if opening is None:
            raise MalformedReply(f"file {name!r} has no fenced code block")
        fence = opening.group(1)
        body_start = opening.end()
        closing = section.find("\n" + fence, body_start - 1)
        if closing < 0:
            raise MalformedReply(f"the code block of file {name!r} is not closed")
        if name in files:
            raise MalformedReply(f"file {name!r} appears twice")
        files[name] = section[body_start : closing + 1]
    missing = [n for n in expected if n not in files]
    extra = [n for n in files if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise MalformedReply(
            "the reply does not hold exactly the requested files: " + "; ".join(parts),
            hint=f"requested files: {', '.join(expected)}",
        )
    return files
