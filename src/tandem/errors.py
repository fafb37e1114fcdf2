"""Errors a user can act on: one line naming the problem and the fix, exit code 2."""


class UsageError(Exception):
    """Bad input (flag, file, setting). The CLI prints it on one line and exits 2, writing nothing."""

    exit_code = 2
