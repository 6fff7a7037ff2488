"""The text helpers: counts, clocks, an exception's first line, passwords redacted."""

from __future__ import annotations

import pytest

from harness import words


def test_count_names_the_noun_in_its_number():
    assert words.count(1, "run") == "1 run" and words.count(3, "run") == "3 runs"
    assert words.count(2, "process", "processes") == "2 processes"


def test_one_clock_rounds_to_the_nearest_second():
    """One clock for the estimate's and status's times: 59.6 s elapsed and 59.6 s left read alike."""
    assert words.clock(59.6) == "0:01:00" and words.clock(59.4) == "0:00:59"
    assert words.clock(3723) == "1:02:03"


def test_first_line_of_an_exception_is_one_line_without_passwords():
    exc = OSError("cannot reach postgresql://bob:t0psecret@h/db\ntraceback detail")
    assert words.first_line(exc) == "cannot reach postgresql://bob:***@h/db"
    assert words.first_line(exc, named=True) == "OSError: cannot reach postgresql://bob:***@h/db"
    assert words.first_line(ValueError("  "), named=True) == "ValueError"
    assert words.first_line(KeyError()) == "KeyError"
    assert words.first_line(RuntimeError("x" * 900), limit=500) == "x" * 500


@pytest.mark.parametrize("text, expected", [
    ("sqlite:///runs/harness.db", "sqlite:///runs/harness.db"),
    ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("a postgresql+psycopg://u:pw@h:5432/db and mysql://x:y@z/w", "a postgresql+psycopg://u:***@h:5432/db and "
                                                                   "mysql://x:***@z/w"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("--password=abc PGPASSWORD=xyz", "--password=*** PGPASSWORD=***"),
])
def test_redact(text, expected):
    assert words.redact(text) == expected


