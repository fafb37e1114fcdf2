from tandem.tables import format_table, shorten


def test_columns_are_padded_and_the_last_is_left_as_it_is():
    text = format_table(("field", "a", "note"), [("python", "3.11", "same"), ("uv", "0.13.9", "a long note here")])
    assert text.splitlines() == [
        "field   a       note",
        "------  ------  ----",
        "python  3.11    same",
        "uv      0.13.9  a long note here",
    ]


def test_shorten_cuts_with_an_ellipsis():
    assert shorten("abcdefgh", 8) == "abcdefgh"
    assert shorten("abcdefghi", 8) == "abcde..."
