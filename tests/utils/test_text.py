"""utils/text.py: UID validation, safe_text and safe_filename on hostile text."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mammokit.utils.text import is_valid_uid, safe_filename, safe_text, uid_problem

# Every character Python's str.splitlines() splits on.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_valid_uids():
    for uid in ("1.2.840.10008.1.2.1", "0", "0.0", "1.2.3.10", "2.25." + "1" * 39, "1" * 64):
        assert uid_problem(uid) is None, uid


def test_invalid_uids_say_why():
    assert "leading zero" in uid_problem("1.02.3")
    assert "empty component" in uid_problem("1..2")
    assert "empty component" in uid_problem("1.2.")
    assert "digits" in uid_problem("1.2\x853")
    assert "digits" in uid_problem("../../x")
    assert "digits" in uid_problem("1.２.3")  # a full-width digit is isdigit() but not 0-9
    assert "65 characters" in uid_problem("1" * 65)
    assert uid_problem("") == "empty UID"
    assert not is_valid_uid("1.2 .3")


def test_safe_text_examples():
    assert safe_text("1.2\x853") == "1.2\\x853"
    assert safe_text("a\u2028b\nc\td") == "a\\u2028b\\x0ac\\x09d"
    assert safe_text("Müller^Zoë") == "Müller^Zoë"  # ordinary letters kept
    assert safe_text("a\\b") == "a\\\\b"
    assert safe_text("a\\b", escape_backslash=False) == "a\\b"
    assert safe_text("\u202eevil") == "\\u202eevil"  # bidi override (Cf)
    assert safe_text("x" * 20, max_len=10) == "xxxxxxx..."


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_safe_text_is_one_printable_line(text):
    out = safe_text(text)
    assert len(out.splitlines()) <= 1
    assert not any(ch in out for ch in LINE_BREAKS)
    assert all(ch.isprintable() for ch in out)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_safe_text_is_injective(a, b):
    if a != b:
        assert safe_text(a) != safe_text(b)


def test_safe_filename_examples():
    assert safe_filename("1.2.840.5") == "1.2.840.5"
    assert safe_filename("../../x") == "___.._x"
    assert safe_filename("..") == "__"
    assert safe_filename(".hidden") == "_hidden"
    assert safe_filename("") == "_"
    assert safe_filename("a/b\\c\x85d") == "a_b_c_d"
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert len(safe_filename(long_a)) == 120
    assert safe_filename(long_a) != safe_filename(long_b)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_safe_filename_is_one_harmless_component(text):
    name = safe_filename(text)
    assert 1 <= len(name) <= 120
    assert set(name) <= set(string.ascii_letters + string.digits + "._-")
    assert not name.startswith(".")  # never ".", "..", or a hidden file
    assert "/" not in name and "\\" not in name
