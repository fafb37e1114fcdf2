"""A settings value as each generated file must spell it: one function per format.

The settings hold only the characters their fields allow (tandem.env.settings, listed in docs/parity.md),
so most values come out as written. These functions are what keeps every value literal whatever it holds,
and they refuse what no quoting can carry: a line break or NUL ends a Dockerfile instruction, a YAML line
and an env-file line alike. The Modal image gets its values through Modal's API, which quotes them itself
(shlex.quote in the Dockerfile it sends to its builder).
"""

from __future__ import annotations

import json
import re
import shlex

_PLAIN = re.compile(r"[A-Za-z0-9._/:,=+@-]+")  # needs no quotes in a Dockerfile word


def dockerfile_word(value: str) -> str:
    """A value in an ENV, ARG or WORKDIR instruction. BuildKit reads `"..."` with \\, " and $ escaped by a
    backslash, so the value is the same bytes in the image, `$` included (never expanded)."""
    _one_line(value, "a Dockerfile instruction")
    if _PLAIN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def shell_word(value: str) -> str:
    """A word of a RUN command: /bin/sh reads it as one word, literally."""
    return shlex.quote(_one_line(value, "a Dockerfile RUN line"))


def compose_string(template: str, *values: str) -> str:
    """A compose.yaml scalar: `template` (Compose syntax, `${VAR:-default}` interpolation included) with each
    `%s` replaced by a value, JSON-quoted (JSON strings are YAML). Compose reads `$` and braces in any string
    as interpolation and no escape works inside a `${...}` default, so a value holding one is refused."""
    for value in values:
        _one_line(value, "compose.yaml")
        if re.search(r"[${}]", value):
            raise ValueError(f"{value!r} holds '$', '{{' or '}}', which Compose would interpolate")
    return json.dumps(template % values)


def env_file_value(value: str) -> str:
    """A value in docker/image.env (KEY=VALUE lines), as tox reads it: the rest of the line, stripped, with
    `{...}` substituted and a backslash escaping the next character; no quoting exists there."""
    _one_line(value, "docker/image.env")
    if value != value.strip() or re.search(r"[\\{}]", value):
        raise ValueError(f"{value!r} has spaces at an end, a backslash or a brace, which tox would change")
    return value


def _one_line(value: str, where: str) -> str:
    if not value.isprintable():
        raise ValueError(f"{value!r} holds a line break or control character, which {where} cannot carry")
    return value
