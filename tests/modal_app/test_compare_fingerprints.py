"""`tox -e modal`: the check Function on a Modal GPU, compared with this machine and Docker."""

from __future__ import annotations

import contextlib
import json

import modal
import pytest

from modal_app import compare_fingerprints as check
from tandem.env.modal_login import no_credentials_message


def test_without_credentials_it_fails_with_one_line(no_credentials, capsys):
    assert check.main([]) == 1
    captured = capsys.readouterr()
    assert captured.err == no_credentials_message("tox -e modal") + "\n"
    assert captured.out == ""


def test_a_bad_gpu_is_one_line(with_credentials, capsys):
    assert check.main(["--gpu", "H100:2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.training
def test_it_compares_modal_with_local_and_docker(with_credentials, checked, monkeypatch, tmp_path, capsys):
    """The Modal call replaced at `.remote` (answered with a fingerprint made here), the app's start made
    a no-op; Docker's fingerprint given by its flag."""
    import tandem.check.fingerprint as fingerprints

    _, fingerprint = checked
    sent = []

    def remote(self, *args):
        from modal._utils.async_utils import synchronizer

        options = synchronizer._translate_in(self)._options
        sent.append(
            (synchronizer._translate_in(self)._tag, options.resources.gpu_config.gpu_type, options.timeout_secs, args)
        )
        return {**fingerprint, "label": args[0]}

    monkeypatch.setattr(modal.Function, "remote", remote)
    monkeypatch.setattr(modal.App, "run", lambda self, **kwargs: contextlib.nullcontext())
    # The local fingerprint's behaviour runs take a while on CPU: this machine's, computed once.
    monkeypatch.setattr(fingerprints, "collect_fingerprint", lambda label, gpu: {**fingerprint, "label": label})
    docker = tmp_path / "docker.json"
    docker.write_text(json.dumps({**fingerprint, "label": "docker"}))
    assert check.main(["--outputs", str(tmp_path), "--gpu", "l4", "--docker-fingerprint", str(docker)]) == 0
    assert sent == [("check", "L4", 1800, ("modal-L4", "/runs"))]
    assert sorted(p.name for p in (tmp_path / "fingerprints").iterdir()) == ["local.json", "modal-L4.json"]
    assert "across local, docker, modal-L4" in capsys.readouterr().out


@pytest.mark.training
def test_tox_runs_it_as_a_module_from_the_project_root(tmp_path):
    """tox.ini's `python -m modal_app.compare_fingerprints`: the package imports with no path set up."""
    import os
    import subprocess
    import sys

    from support import REPO

    env = {**os.environ, "HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(tmp_path / "none.toml")}
    env.pop("MODAL_TOKEN_ID", None), env.pop("MODAL_TOKEN_SECRET", None), env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "modal_app.compare_fingerprints"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("tox -e modal: no Modal credentials")
