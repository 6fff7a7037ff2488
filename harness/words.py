"""Plain words for what a researcher reads: the one home of the harness's text helpers.

A count with its noun, as a sentence says it ("1 run", "3 runs"); a wall time as a clock (`1:02:03`); the
first line of an exception, as every one-line error and log line shows it; passwords replaced by *** in URLs
and password arguments, before any text is shown or stored. Imports nothing of the harness, so every layer
(the store included) may use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 process`, `8 processes`: a number and its noun (`many`: the plural when it is not `one` + s)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def epoch_of(epoch: int, epochs: int | None) -> str:
    """`3 of 12`: an epoch as the store, `results`, filters and MLflow's step number it, counted from 0 as timm's and
    DeiT's own logs do (a 12-epoch run's last is 11 of 12), with the run's epochs beside it."""
    return f"{epoch} of {epochs}" if epochs is not None else str(epoch)


def clock(seconds: float) -> str:
    """A wall time as h:mm:ss, to the nearest second (an elapsed and a remaining time alike)."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# scheme://user:password@ -> scheme://user:***@
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@")
# a URL's query parameter: ?key=value or &key=value
_QUERY_PARAM = re.compile(r"(?P<head>[?&](?P<key>[^=&#\s]+)=)(?P<value>[^&#\s]*)")
# --password=... / PGPASSWORD=... style arguments
_PASSWORD_ARG = re.compile(r"(?i)(?P<head>(?:--)?[a-z_]*pass(?:word|wd)?[=:])(?P<pw>\S+)")


def redact(text: str) -> str:
    """Replace the passwords of URLs (`user:password@`, `?password=` however its name is percent-encoded) and
    password=... arguments in `text` by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
    text = _QUERY_PARAM.sub(lambda m: f"{m['head']}***" if unquote_plus(m["key"]) == "password" else m[0], text)
    return _PASSWORD_ARG.sub(lambda m: f"{m['head']}***", text)


def first_line(exc: BaseException | object, named: bool = False, limit: int | None = None) -> str:
    """The first line of an exception's message, passwords redacted: what a one-line error shows of it. An empty
    message is the exception's type name; `named` puts the type name first (`OSError: disk full`); `limit` cuts
    the line to that many characters."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    line = (f"{name}: {lines[0]}" if named else lines[0]) if lines else name
    return redact(line)[:limit]
