"""Whether this machine can reach Modal: its credentials, read from the environment and the modal client's
config file only (no network call), and the one line that says how to log in when there are none."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

LOGIN = "log in with `modal token new` (or `modal setup`), or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"


def config_file() -> str:
    import modal.config

    return modal.config.user_config_path


def credentials_source(
    environ: Mapping[str, str] | None = None, get: Callable[[str], object] | None = None
) -> str | None:
    """Where the Modal credentials come from, in a few words, or None when there are none.

    `get` reads a setting of the active profile of the modal client's config file (by default through the
    client itself, so profiles and MODAL_CONFIG_PATH work as they do for `modal run`).
    """
    environ = os.environ if environ is None else environ
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set"
    if get is None:
        import modal.config

        def get(key: str):
            return modal.config.config.get(key, use_env=False)

    if (get("token_id") and get("token_secret")) or get("oauth_refresh_token"):
        return f"a token in {config_file()}"
    return None


def no_credentials_message(command: str) -> str:
    """One line: what is missing and how to fix it."""
    return (
        f"{command}: no Modal credentials (no MODAL_TOKEN_ID/MODAL_TOKEN_SECRET, no token in {config_file()}); "
        f"{LOGIN}, then run it again"
    )
