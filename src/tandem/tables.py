"""Plain-text tables for the reports tandem prints (parity, fingerprint comparisons)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A header, a rule and one line per row, columns padded to their widest cell; the last column is left
    unpadded, so a long note does not widen the rule."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers) - 1)] + [len(headers[-1])]
    rule = ["-" * w for w in widths]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths[:-1], strict=True)), line[-1]]).rstrip()
        for line in [cells[0], rule, *cells[1:]]
    )


def shorten(value: str, limit: int) -> str:
    """`value`, cut to `limit` characters with an ellipsis when longer."""
    return value if len(value) <= limit else value[: limit - 3] + "..."
