"""The one error a bad spec raises: it names the file, the key and what is allowed."""

from __future__ import annotations

import re


class SpecError(ValueError):
    def __init__(self, path: str, key: str | None, message: str):
        self.path = path
        self.key = key
        self.message = message
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {message}")


# what a key quoted in an error may look like: a config key's name. Anything else (a line of /etc/shadow read as
# a YAML key, say) is content of a file that is no spec, and is not repeated
_KEY_SHAPE = re.compile(r"[A-Za-z_][\w\-]{0,63}|\d{1,9}")  # a name, or a list's index
UNSHOWN_KEY = "<a key that is no config key, not shown>"


def shown_key(part: str) -> str:
    """One part of a dotted key as an error may quote it."""
    return part if _KEY_SHAPE.fullmatch(part) else UNSHOWN_KEY
