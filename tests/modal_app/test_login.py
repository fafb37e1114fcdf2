"""Where the work runs without Modal credentials, and the one line `tox -e modal` prints then."""

from __future__ import annotations

import pytest

from modal_app.login import credentials_source, no_credentials_message

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


def test_without_credentials_the_entrypoint_runs_here_and_says_why(no_credentials):
    from modal_app.launch import choose_target

    where, why = choose_target(local=False, app_running=False)
    assert where == "local" and "no Modal credentials" in why and "modal token new" in why
    assert choose_target(local=True, app_running=True) == ("local", "--local was given")
    assert choose_target(local=False, app_running=True)[0] == "modal"


def test_with_credentials_the_entrypoint_goes_to_modal(with_credentials):
    from modal_app.launch import choose_target

    assert choose_target(local=False, app_running=False) == (
        "modal",
        "Modal credentials found: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set",
    )
