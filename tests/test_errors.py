"""The one-line rule's helper: a library's message quoted inside ours stays one line."""

from __future__ import annotations

from stacking.errors import first_line


def test_first_line_keeps_the_first_line_of_a_multi_line_message():
    assert first_line(ValueError("  bad shape\n  Traceback details\n")) == "bad shape"


def test_first_line_of_an_empty_message_is_the_type_name():
    # SavedModel and LiteRT loading quoted str(exc).splitlines()[0]: IndexError on "".
    assert first_line(OSError()) == "OSError"
    assert first_line(RuntimeError("   ")) == "RuntimeError"
