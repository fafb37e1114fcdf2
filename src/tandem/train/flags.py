"""The flags of `tandem train <kind>`, made from the config dataclasses, and back: argparse arguments
that remember which were given, the argv that reproduces a config, and the --config file reader."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import typing
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path

from tandem.errors import UsageError
from tandem.train.config import CONFIGS, TrainConfig, upgrade_settings


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def show_value(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def flag_text(name: str, value) -> str:
    """The flag that sets `name` to `value`, as a user types it: --lr 0.5, --compile, --no-amp."""
    if isinstance(value, bool):
        return flag_name(name) if value else "--no-" + name.replace("_", "-")
    return f"{flag_name(name)} {show_value(value)}"


def _field_types(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls)


GIVEN = "given_fields"  # the namespace attribute naming the fields set on the command line (or --config)
CONFIG_FILE = "config_file"
SOURCES = "setting_sources"  # the namespace attribute saying where the given fields came from (see sources)
# Where a setting came from, as config.json's "sources" records it. Every setting a run chose for itself
# (the device's batch size, the --size preset's shape, the dataset's image size) says "chosen by ...".
FLAG, DEFAULT, RECORD, CHOSEN = "flag", "default", "run record", "chosen by"
LENGTHS = frozenset({"steps", "epochs"})


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, GIVEN, getattr(namespace, GIVEN, frozenset()) | {dest})


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark_given(namespace, self.dest)


class _Bool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


def given_fields(args: argparse.Namespace) -> frozenset[str]:
    """The config fields whose flags were on the command line (the others hold their defaults)."""
    return getattr(args, GIVEN, frozenset())


def sources(args: argparse.Namespace) -> dict[str, str]:
    """Each given field and where it came from: "flag", "config file PATH (sha256 DIGEST)", or what the
    process that launched this one said (--setting-sources)."""
    found = dict.fromkeys(sorted(given_fields(args)), FLAG) | getattr(args, SOURCES, {})
    if passed := getattr(args, "passed_sources", None):
        found |= {k: v for k, v in json.loads(passed).items() if k in found}
    return found


def sources_argv(given: dict[str, str] | None) -> list[str]:
    """The hidden flag that hands the sources other than a flag (a --config file's, say) to the process
    this one starts (a rank, Modal's trainer), so that its config.json records them too."""
    passed = {k: v for k, v in (given or {}).items() if v != FLAG}
    return ["--setting-sources", json.dumps(passed, sort_keys=True)] if passed else []


def config_file_source(path: str | Path) -> str:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return f"config file {path} (sha256 {digest[:16]})"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[TrainConfig]) -> None:
    """One flag per field: `batch_size` -> --batch-size; bools -> --flag / --no-flag; and --config FILE."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        dest=CONFIG_FILE,
        help="take the settings from a run's config.json (or its directory) or a TOML file (name = value); "
        "flags override them",
    )
    # How a launcher (the Modal supervisor) passes on where the settings it turns into flags came from.
    parser.add_argument("--setting-sources", dest="passed_sources", metavar="JSON", help=argparse.SUPPRESS)
    types = _field_types(cls)
    for f in fields(cls):
        kind = types[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f.metadata["help"]
        if kind in (bool, bool | None):
            parser.add_argument(flag_name(f.name), dest=f.name, action=_Bool, default=default, help=help_text)
        else:
            parser.add_argument(
                flag_name(f.name),
                dest=f.name,
                action=_Store,
                type=kind,
                default=default,
                choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else f.name.upper(),
                help=help_text,
            )


def config_from_args(cls: type[TrainConfig], args: argparse.Namespace):
    """The config the flags give: a --config file's settings first, the flags typed on top of them (the
    file's keys then count as given, see given_fields)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls)}
    found = {}
    if path := getattr(args, CONFIG_FILE, None):
        kind = next(k for k, c in CONFIGS.items() if c is cls)
        path = config_file_path(path)
        from_file = {k: v for k, v in read_config_file(path, kind).items() if k not in given_fields(args)}
        values.update(from_file)
        setattr(args, GIVEN, given_fields(args) | set(from_file))
        found = dict.fromkeys(from_file, config_file_source(path))
    # A length given as one of --steps / --epochs is that length alone: the other one's default is no limit.
    lengths = LENGTHS & given_fields(args)
    if len(lengths) == 1:
        (one,) = lengths
        (other,) = LENGTHS - lengths
        values[other] = 0
        setattr(args, GIVEN, given_fields(args) | {other})
        if one in found:
            found[other] = found[one]
    setattr(args, SOURCES, found)
    return cls(**values)


def config_file_path(path: str | Path) -> Path:
    """--config names a file, or a run directory meaning its config.json."""
    path = Path(path)
    return path / "config.json" if path.is_dir() else path


def config_to_argv(config: TrainConfig, names: Collection[str] | None = None) -> list[str]:
    """The flags that reproduce `config` exactly (the inverse of add_config_arguments + config_from_args);
    only those of the fields `names` when given, so that they are all the flags a command counts as given."""
    argv = []
    for f in fields(config):
        if names is not None and f.name not in names:
            continue
        value = getattr(config, f.name)
        if value is None:  # the device's default: no flag says it
            continue
        if isinstance(value, bool):
            argv.append(flag_name(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            argv += [flag_name(f.name), repr(value) if isinstance(value, float) else str(value)]
    return argv


TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    bool | None: "true or false",
    str: "a string",
}
# Settings of one invocation: a file that reruns or varies a run never carries them over.
NOT_FROM_FILE = ("run_name", "resume", "stop_after")


def read_config_file(path: str | Path, kind: str) -> dict:
    """The settings in a TOML file (name = value, names as in config.json or as flags) or in a run's
    config.json; UsageError naming the first key that is not a setting of `kind` or has the wrong type."""
    import tomllib

    path = Path(path)
    try:
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc}); pass a config.json or a .toml file") from None
    except ValueError as exc:
        raise UsageError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: holds {type(values).__name__}, not a table of settings")
    if isinstance(values.get("config"), dict) and "kind" in values:  # a run's config.json
        if values["kind"] != kind:
            raise UsageError(f"--config {path} is a {values['kind']} run; use it with tandem train {values['kind']}")
        # What the run chose for itself (its device's batch size, its preset's shape) is chosen anew.
        recorded = values.get("sources") if isinstance(values.get("sources"), dict) else {}
        chosen = {k for k, v in upgrade_settings(kind, recorded).items() if str(v).startswith(CHOSEN)}
        settings = upgrade_settings(kind, values["config"])
        values = {k: v for k, v in settings.items() if k not in NOT_FROM_FILE and k not in chosen}
    types, out = _field_types(CONFIGS[kind]), {}
    for key, value in upgrade_settings(kind, values).items():
        name = key.replace("-", "_")
        if name not in types:
            raise UsageError(
                f"--config {path}: unknown key {key!r}; the keys are tandem train {kind}'s flags without "
                "the dashes (batch_size = 64)"
            )
        kind_of = types[name]
        if kind_of is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
            raise UsageError(f"--config {path}: {key} = {value!r} is not {TYPE_WORDS[kind_of]}; fix the file")
        out[name] = value
    return out
