"""`tandem check --compare`: fingerprints side by side, field by field.

Versions, environment variables, source and settings must be equal. Losses are compared with a relative
tolerance of LOSS_RTOL: fp32 kernels pick code paths by CPU feature (AVX2, AVX-512, NEON), which reorders
floating-point sums; over a few steps that moves a loss by about 1e-6 relative, while a real difference (a
library version, an init, the data order, a learning rate) moves it by 1e-3 or more. Parameter and output
digests are compared bit for bit only between identical CPU models (or GPU models), where the same
libraries must give the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tandem.check.environment import shadowed_packages
from tandem.env.digest import LAYOUT_VARS
from tandem.tables import format_table, shorten

LOSS_RTOL = 1e-4
MISSING = "-"
SCHEMA = 1  # the fingerprint format tandem check writes and --compare reads; another one is refused


# What compare_fingerprints reads, and its type: a file that does not have it is not a fingerprint.
# {str: X} is a mapping of any keys to X; (A, B) is either; [X] a list of X.
_BEHAVIOUR = {
    "classifier": {"losses": [float], "params_sha256": str},
    "dit": {"losses": [float], "params_sha256": str},
    "forward": {str: {"sha256": str, "abs_sum": float}},
}
SHAPE = {
    "schema": int,
    "environment": {
        "python": str,
        "implementation": str,
        "platform": str,
        "cpu": str,
        "image_digest": (str, None),
        "distributions": {
            "locked": {str: (None, {"installed": (str, None), "matches_lock": bool})},
            "not_in_lock": {str: str},
        },
        "env": {str: (str, None)},
        "source_sha256": str,
        "settings_digest": str,
    },
    "cpu": _BEHAVIOUR,
    "gpu": (None, {"name": str, **_BEHAVIOUR}),
}


def fingerprint_problem(value) -> str | None:
    """Why `value` is not a fingerprint this tandem can compare, or None."""
    schema = value.get("schema") if isinstance(value, dict) else None
    if type(schema) is int and schema != SCHEMA:  # before the shape: another schema may have another one
        return f"schema {schema}, but this tandem reads schema {SCHEMA} only"
    return shape_problem(value)


def shape_problem(value, shape=SHAPE, where: str = "") -> str | None:
    """Where `value` departs from SHAPE (e.g. "environment.python is missing"), or None when it fits."""
    if isinstance(shape, tuple):
        problems = [shape_problem(value, option, where) for option in shape]
        return None if None in problems else problems[-1]
    if shape is None:
        return None if value is None else f"{where or 'it'} is {_kind(value)}, not null"
    if isinstance(shape, type):
        ok = isinstance(value, shape) and not isinstance(value, bool) or shape is bool and isinstance(value, bool)
        if shape is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{where or 'it'} is {_kind(value)}, not {shape.__name__}"
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where or 'it'} is {_kind(value)}, not a list"
        return next((p for i, v in enumerate(value) if (p := shape_problem(v, shape[0], f"{where}[{i}]"))), None)
    if not isinstance(value, dict):
        return f"{where or 'it'} is {_kind(value)}, not an object"
    if str in shape:  # any keys
        return next((p for k, v in value.items() if (p := shape_problem(v, shape[str], _join(where, k)))), None)
    for key, inner in shape.items():
        if key not in value:
            return f"{_join(where, key)} is missing"
        if problem := shape_problem(value[key], inner, _join(where, key)):
            return problem
    return None


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


@dataclass
class Row:
    field: str
    values: list[str]
    ok: bool
    note: str = ""


def compare_fingerprints(fingerprints: list[dict]) -> list[Row]:
    envs = [fp["environment"] for fp in fingerprints]
    # The settings pin the Python minor; the patch release comes with the base image, so it must match
    # between images (same base) but a local interpreter may be any patch of that minor.
    rows = [_same("python minor", [".".join(e["python"].split(".")[:2]) for e in envs])]
    images = [e for e in envs if e["image_digest"] is not None]
    patches = [e["python"] if e["image_digest"] is not None else "(local)" for e in envs]
    rows.append(Row("python patch (images)", patches, len({e["python"] for e in images}) <= 1))
    rows += [_same(name, [e.get(name) for e in envs]) for name in ("implementation", "platform")]

    locked = sorted({name for e in envs for name in e["distributions"]["locked"]})
    for name in locked:
        entries = [e["distributions"]["locked"].get(name) for e in envs]
        values = [(x["installed"] or "missing") if x else MISSING for x in entries]
        ok = len(set(values)) == 1 and all(x is None or x["matches_lock"] for x in entries)
        rows.append(Row(f"package {name}", values, ok, "" if ok else "differs or does not match the lock"))
    shadowed = [sorted(shadowed_packages(e["distributions"])) for e in envs]
    rows.append(
        Row(
            "packages from outside the env",
            [", ".join(names) or "(none)" for names in shadowed],
            not any(shadowed),
            "" if not any(shadowed) else "a copy earlier on sys.path runs instead of the locked one",
        )
    )
    for name in sorted({n for e in envs for n in e["distributions"]["not_in_lock"]}):
        values = [e["distributions"]["not_in_lock"].get(name, MISSING) for e in envs]
        rows.append(Row(f"package {name}", values, False, "installed outside the lock"))

    for name in sorted({n for e in envs for n in e["env"]}):
        values = [str(e["env"].get(name)) if e["env"].get(name) is not None else "(unset)" for e in envs]
        if name in LAYOUT_VARS:
            rows.append(Row(f"env {name}", values, True, "where this target keeps things"))
        else:
            rows.append(_same(f"env {name}", values))

    shapes = [e.get("distributed") or {"world_size": 1, "nodes": 1} for e in envs]  # older files: one process
    rows.append(_same("ranks x nodes", [f"{s['world_size']} ranks on {s['nodes']} node(s)" for s in shapes]))
    rows.append(_same("source sha256", [e["source_sha256"] for e in envs]))
    rows.append(_same("settings+lock digest", [e["settings_digest"] for e in envs]))
    fresh = [e["image_digest"] in (None, e["settings_digest"]) for e in envs]
    rows.append(
        Row(
            "image built from this source",
            ["n/a (no image)" if e["image_digest"] is None else str(ok) for e, ok in zip(envs, fresh, strict=True)],
            all(fresh),
            "" if all(fresh) else "an image is older than its source: rebuild it",
        )
    )

    rows += _behaviour_rows("cpu", [fp["cpu"] for fp in fingerprints], [e["cpu"] for e in envs])
    gpus = [fp.get("gpu") for fp in fingerprints]
    for name in sorted({g["name"] for g in gpus if g}):
        same_kind = [g if g and g["name"] == name else None for g in gpus]
        if sum(g is not None for g in same_kind) >= 2:
            rows += _behaviour_rows(f"gpu {name}", same_kind, [name] * len(gpus))
    return rows


def _behaviour_rows(section: str, behaviours: list[dict | None], hardware: list[str]) -> list[Row]:
    present = [b for b in behaviours if b is not None]
    same_hardware = len({h for h, b in zip(hardware, behaviours, strict=True) if b is not None}) == 1
    rows = []
    for kind in ("classifier", "dit"):
        losses = [b[kind]["losses"] if b else None for b in behaviours]
        ok, worst = _close([x for x in losses if x is not None])
        values = [f"{len(x)} steps, last {x[-1]:.6f}" if x else MISSING for x in losses]
        rows.append(Row(f"{section} {kind} losses", values, ok, f"max rel diff {worst:.1e} (tol {LOSS_RTOL:.0e})"))
        digests = [b[kind]["params_sha256"][:19] if b else MISSING for b in behaviours]
        rows.append(_digest_row(f"{section} {kind} params", digests, same_hardware))
    for model in sorted({m for b in present for m in b["forward"]}):
        digests = [b["forward"][model]["sha256"][:19] if b else MISSING for b in behaviours]
        if same_hardware:
            rows.append(_digest_row(f"{section} {model} forward", digests, True))
        else:
            sums = [b["forward"][model]["abs_sum"] for b in present]
            ok = max(sums) - min(sums) <= LOSS_RTOL * max(abs(s) for s in sums)
            rows.append(Row(f"{section} {model} forward", [f"{s:.6f}" for s in sums], ok, "|output| sum"))
    return rows


def _digest_row(field: str, digests: list[str], compare_bits: bool) -> Row:
    if compare_bits:
        return _same(field, digests)
    return Row(field, digests, True, "different hardware: compared through the losses")


def _close(series: list[list[float]]) -> tuple[bool, float]:
    if len({len(s) for s in series}) > 1:
        return False, math.inf
    worst = 0.0
    for values in zip(*series, strict=True):
        if not all(math.isfinite(v) for v in values):
            return False, math.inf
        scale = max(abs(v) for v in values) or 1.0
        worst = max(worst, (max(values) - min(values)) / scale)
    return worst <= LOSS_RTOL, worst


def _same(field: str, values: list) -> Row:
    shown = [MISSING if v is None else str(v) for v in values]
    return Row(field, shown, len(set(shown)) == 1)


def format_rows(rows: list[Row], labels: list[str], only_mismatches: bool = False) -> str:
    table = [
        [r.field, *(shorten(v, 34) for v in r.values), "yes" if r.ok else "NO", r.note]
        for r in rows
        if r.ok is False or not only_mismatches
    ]
    return format_table(["field", *labels, "match", "note"], table)
