"""The Modal target: `tandem train`, `tandem sample` and `tandem check` on Modal's GPUs.

    modal run modal_app/train.py dit --steps 2000 --gpu A100 --gpus 2
    modal run --detach modal_app/train.py dit --steps 200000     # keeps running when this machine sleeps
    modal run modal_app/train.py fetch dit-20260101-120000       # a run's outputs into ./outputs/<run>/
    python modal_app/train.py dit --steps 2000     # Modal when logged in, else here (--local forces it)

This file is only the entry: the app and its Functions live in the modal_app package beside it (which
Modal mounts in the container, as the Functions' own package).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a file (`modal run modal_app/train.py`, `python modal_app/train.py`), only this folder is on
    # sys.path; the package it belongs to is found from the project root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modal_app.functions import app  # noqa: E402
from modal_app.launch import launch, modal_cli_detached  # noqa: E402


@app.local_entrypoint()
def main(*arglist: str) -> None:
    if code := launch(list(arglist), app_running=True, detached=modal_cli_detached()):
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:], app_running=False))
