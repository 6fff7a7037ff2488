"""The one error a bad spec raises: it names the file, the key and what is allowed."""

from __future__ import annotations


class SpecError(ValueError):
    def __init__(self, path: str, key: str | None, message: str):
        self.path = path
        self.key = key
        self.message = message
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {message}")
