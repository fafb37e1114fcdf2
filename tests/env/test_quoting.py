"""Each generated format's quoting: literal values, and refusal of what the format cannot carry."""

import json
import shlex

import pytest

from tandem.env.quoting import compose_string, dockerfile_word, env_file_value, shell_word

LINE_BREAKERS = ["a\nRUN echo pwned", "a\rb", "a\x00b", "a\u2028b", "a\x85b"]


@pytest.mark.parametrize(
    "value, word",
    [
        ("1", "1"),
        ("expandable_segments:True", "expandable_segments:True"),
        ("/app/src", "/app/src"),
        ("", '""'),
        ("a b", '"a b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("$HOME", '"\\$HOME"'),
        ("back\\slash \\", '"back\\\\slash \\\\"'),  # a trailing backslash continues no line
        ("it's; rm -rf / && `id` | sh", '"it\'s; rm -rf / && `id` | sh"'),
    ],
)
def test_dockerfile_words_are_bare_when_plain_and_quoted_otherwise(value, word):
    assert dockerfile_word(value) == word


@pytest.mark.parametrize("value", LINE_BREAKERS)
def test_no_format_carries_a_line_break_or_nul(value):
    for quote in (dockerfile_word, shell_word, env_file_value, lambda v: compose_string("%s", v)):
        with pytest.raises(ValueError, match="line break or control character"):
            quote(value)


@pytest.mark.parametrize("value", ["gcc", "/app", "a b", "x; echo pwned", "$(id)", "it's"])
def test_shell_words_read_back_as_one_word(value):
    assert shlex.split(f"mkdir -p {shell_word(value)}") == ["mkdir", "-p", value]


def test_compose_strings_are_json_and_refuse_interpolation_in_values():
    assert compose_string("${TANDEM_DATA_DIR:-./data}:%s", "/data") == '"${TANDEM_DATA_DIR:-./data}:/data"'
    assert json.loads(compose_string("%s", 'a "b" \\ c')) == 'a "b" \\ c'
    for value in ("/da$ta", "/x}", "/{x"):
        with pytest.raises(ValueError, match="which Compose would interpolate"):
            compose_string("${TANDEM_DATA_DIR:-./data}:%s", value)


@pytest.mark.parametrize("value", [" 1", "1 ", "a\\b", "{tox_root}", "a}"])
def test_env_file_values_refuse_what_tox_would_change(value):
    with pytest.raises(ValueError, match="which tox would change"):
        env_file_value(value)


def test_env_file_values_are_written_as_given():
    assert env_file_value("expandable_segments:True,x=1 $HOME 'q' \"q\"") == (
        "expandable_segments:True,x=1 $HOME 'q' \"q\""
    )
