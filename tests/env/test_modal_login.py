"""Modal credentials, found without the network, and the one line that says how to log in."""

from __future__ import annotations

import pytest

from tandem.env.modal_login import credentials_source, no_credentials_message

NOTHING = {}.get


@pytest.mark.parametrize(
    ("environ", "config", "found"),
    [
        ({}, NOTHING, None),
        ({"MODAL_TOKEN_ID": "ak-1"}, NOTHING, None),  # half a token is none
        ({"MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": "as-1"}, NOTHING, "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"),
        ({}, {"token_id": "ak-1", "token_secret": "as-1"}.get, "a token in"),
        ({}, {"oauth_refresh_token": "rt"}.get, "a token in"),
    ],
)
def test_credentials_are_found_without_the_network(environ, config, found):
    source = credentials_source(environ, config)
    assert source is None if found is None else found in source


def test_no_credentials_message_is_one_line_saying_how_to_log_in():
    message = no_credentials_message("tox -e modal")
    assert "\n" not in message
    assert message.startswith("tox -e modal: no Modal credentials")
    assert "`modal token new`" in message and "`modal setup`" in message
