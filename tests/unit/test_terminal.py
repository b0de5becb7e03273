"""Text safe to print: every control character escaped, JSON lines the same value."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from regauthd.terminal import json_line, printable


def test_escapes_are_shown_as_repr_shows_them() -> None:
    assert printable("ghcr.io") == "ghcr.io"
    assert printable("\x1b[2Jx\nregauthd: ok\r\t") == "\\x1b[2Jx\\x0aregauthd: ok\\x0d\\x09"
    assert printable("a\u202eb\u2028c\x9bd\ud800") == "a\\u202eb\\u2028c\\x9bd\\ud800"
    assert printable("Zürich, 東京") == "Zürich, 東京"  # letters of every script stay


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_nothing_printed_can_move_the_cursor_or_start_a_line(text: str) -> None:
    shown = printable(text)
    assert "\n" not in shown and "\r" not in shown
    for char in shown:
        assert unicodedata.category(char) not in {"Cc", "Cs", "Zl", "Zp"}, repr(char)
        assert char not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), st.text() | st.integers() | st.none()))
def test_a_json_line_is_one_line_of_the_same_value(obj: dict[str, object]) -> None:
    line = json_line(obj)
    assert json.loads(line) == obj
    assert printable(line) == line  # nothing a terminal would act on
    line.encode("utf-8")  # lone surrogates are escapes, not unencodable characters
