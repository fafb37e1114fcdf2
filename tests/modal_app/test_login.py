"""Where the work runs without Modal credentials, and the one line `tox -e modal` prints then."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from modal_login import credentials_source, no_credentials_message

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


def test_tox_modal_without_credentials_fails_with_that_line(no_credentials, capsys):
    from modal_check import main

    assert main([]) == 1
    captured = capsys.readouterr()
    assert captured.err == no_credentials_message("tox -e modal") + "\n"
    assert captured.out == ""


def test_without_credentials_the_entrypoint_runs_here_and_says_why(no_credentials):
    from modal_launch import choose_target

    where, why = choose_target(local=False, app_running=False)
    assert where == "local" and "no Modal credentials" in why and "modal token new" in why
    assert choose_target(local=True, app_running=True) == ("local", "--local was given")
    assert choose_target(local=False, app_running=True)[0] == "modal"


def test_with_credentials_the_entrypoint_goes_to_modal(monkeypatch):
    import modal_login
    from modal_launch import choose_target

    monkeypatch.setattr(modal_login, "credentials_source", lambda: "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set")
    assert choose_target(local=False, app_running=False) == (
        "modal",
        "Modal credentials found: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set",
    )


def test_tox_modal_compares_modal_with_local_and_docker(target, checked, monkeypatch, tmp_path, capsys):
    """The orchestration, with the Modal call and the Docker run replaced by the fingerprint made here."""
    import json

    import modal_check
    import modal_launch
    import modal_login

    import tandem.check.fingerprint as fingerprints

    _, fingerprint = checked
    folder = tmp_path / "fingerprints"

    def save(label: str) -> Path:
        path = folder / f"{label}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**fingerprint, "label": label}))
        return path

    monkeypatch.setattr(modal_login, "credentials_source", lambda: "a token")
    monkeypatch.setattr(modal_launch, "modal_session", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(modal_launch, "run_check", lambda t, gpu, where, timeout, f: save(f"{where}-{gpu}"))
    monkeypatch.setattr(fingerprints, "collect_fingerprint", lambda label, gpu: {**fingerprint, "label": label})
    monkeypatch.setattr(modal_check, "docker_fingerprint", lambda f, root: save("docker"))
    assert modal_check.main(["--outputs", str(tmp_path), "--gpu", "L4"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["docker.json", "local.json", "modal-L4.json"]
    assert "across local, docker, modal-L4" in capsys.readouterr().out
