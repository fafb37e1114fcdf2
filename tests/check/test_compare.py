import copy
import json

import pytest

from tandem.check.commands import compare_command
from tandem.check.compare import LOSS_RTOL, compare_fingerprints


def fingerprint(label="local") -> dict:
    behaviour = {
        "classifier": {"losses": [2.3, 2.1, 1.9], "params_sha256": "sha256:aa"},
        "dit": {"losses": [1.5, 1.2, 1.0], "params_sha256": "sha256:bb"},
        "forward": {"classifier": {"sha256": "sha256:cc", "sum": 1.0, "abs_sum": 3.0}},
    }
    return {
        "schema": 1,
        "label": label,
        "environment": {
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "linux-x86_64",
            "cpu": "Xeon",
            "distributions": {
                "locked": {"torch": {"locked": "2.14.1", "installed": "2.14.1", "matches_lock": True}},
                "not_in_lock": {},
            },
            "env": {"PYTHONUNBUFFERED": "1", "TANDEM_DATA_DIR": "./data"},
            "source_sha256": "sha256:src",
            "settings_digest": "sha256:set",
            "image_digest": None,
            "device": {},
        },
        "cpu": behaviour,
        "gpu": None,
    }


def bad_fields(a, b):
    return [row.field for row in compare_fingerprints([a, b]) if not row.ok]


def test_identical_fingerprints_match():
    assert bad_fields(fingerprint(), fingerprint("docker")) == []


def test_layout_variables_may_differ():
    b = fingerprint("docker")
    b["environment"]["env"]["TANDEM_DATA_DIR"] = "/data"
    assert bad_fields(fingerprint(), b) == []


def test_env_var_set_only_in_one_environment_is_named():
    b = fingerprint("docker")
    b["environment"]["env"]["OMP_NUM_THREADS"] = "1"
    assert bad_fields(fingerprint(), b) == ["env OMP_NUM_THREADS"]


def test_package_installed_only_in_container_is_named():
    b = fingerprint("docker")
    b["environment"]["distributions"]["not_in_lock"]["requests"] = "2.32.0"
    assert bad_fields(fingerprint(), b) == ["package requests"]


def test_version_drift_and_lock_mismatch():
    b = fingerprint("docker")
    b["environment"]["distributions"]["locked"]["torch"].update(installed="2.13.0", matches_lock=False)
    assert bad_fields(fingerprint(), b) == ["package torch"]


def test_python_patch_may_differ_locally_but_not_between_images():
    local, docker, twin = fingerprint("local"), fingerprint("docker"), fingerprint("twin")
    for fp, patch in ((docker, "3.11.2"), (twin, "3.11.2")):
        fp["environment"]["python"] = patch
        fp["environment"]["image_digest"] = fp["environment"]["settings_digest"]
    assert [r.field for r in compare_fingerprints([local, docker, twin]) if not r.ok] == []
    twin["environment"]["python"] = "3.11.9"
    assert [r.field for r in compare_fingerprints([local, docker, twin]) if not r.ok] == ["python patch (images)"]
    twin["environment"]["python"] = "3.12.1"
    assert "python minor" in [r.field for r in compare_fingerprints([local, docker, twin]) if not r.ok]


def test_stale_image_is_flagged():
    b = fingerprint("docker")
    b["environment"]["image_digest"] = "sha256:older"
    assert bad_fields(fingerprint(), b) == ["image built from this source"]


def test_losses_within_tolerance_pass_and_beyond_fail():
    near, far = fingerprint("near"), fingerprint("far")
    near["environment"]["cpu"] = far["environment"]["cpu"] = "Other CPU"  # digests not compared bit for bit
    near["cpu"]["dit"]["losses"] = [x * (1 + LOSS_RTOL / 10) for x in near["cpu"]["dit"]["losses"]]
    near["cpu"]["dit"]["params_sha256"] = "sha256:different-bits"
    assert bad_fields(fingerprint(), near) == []
    far["cpu"]["dit"]["losses"] = [x * (1 + LOSS_RTOL * 10) for x in far["cpu"]["dit"]["losses"]]
    assert bad_fields(fingerprint(), far) == ["cpu dit losses"]


def test_same_cpu_requires_identical_parameters():
    b = fingerprint("docker")
    b["cpu"]["classifier"]["params_sha256"] = "sha256:other"
    assert bad_fields(fingerprint(), b) == ["cpu classifier params"]


def test_gpu_sections_compare_only_same_kind():
    a, b, c = fingerprint("a"), fingerprint("b"), fingerprint("c")
    a["gpu"] = {"name": "NVIDIA H100", **copy.deepcopy(a["cpu"])}
    b["gpu"] = {"name": "NVIDIA A10G", **copy.deepcopy(a["cpu"])}
    b["gpu"]["dit"]["losses"] = [9.0, 9.0, 9.0]
    assert [r.field for r in compare_fingerprints([a, b]) if r.field.startswith("gpu")] == []
    c["gpu"] = {"name": "NVIDIA H100", **copy.deepcopy(a["cpu"])}
    c["gpu"]["dit"]["losses"] = [9.0, 9.0, 9.0]
    assert "gpu NVIDIA H100 dit losses" in [r.field for r in compare_fingerprints([a, c]) if not r.ok]


def test_compare_command_exit_codes(tmp_path, capsys):
    paths = []
    for label in ("local", "docker"):
        paths.append(tmp_path / f"{label}.json")
        paths[-1].write_text(json.dumps(fingerprint(label)))
    assert compare_command([str(p) for p in paths]) == 0
    bad = fingerprint("docker")
    bad["environment"]["env"]["PYTHONUNBUFFERED"] = "0"
    paths[1].write_text(json.dumps(bad))
    assert compare_command([str(p) for p in paths]) == 1
    assert "env PYTHONUNBUFFERED" in capsys.readouterr().out


NOT_FINGERPRINTS = [
    # (file bytes, the reason the one line gives)
    (b"{}", "not a tandem fingerprint (schema is missing)"),
    (b"[]", "not a tandem fingerprint (it is list, not an object)"),
    (b"null", "not a tandem fingerprint (it is null, not an object)"),
    (b'{"schema": 1, "environment": {"python"', "not a readable fingerprint (Expecting ':' delimiter"),
    (bytes(range(128, 256)), "not a readable fingerprint (not UTF-8 text)"),
    (b'{"schema": 1, "environment": {"python": 3}}', "not a tandem fingerprint (environment.python is int, not str)"),
    (b'{"environment": {}}', "not a tandem fingerprint (schema is missing)"),
    (b'{"schema": "1"}', "not a tandem fingerprint (schema is str, not int)"),
]


@pytest.mark.parametrize("content, reason", NOT_FINGERPRINTS)
def test_a_file_that_is_not_a_fingerprint_is_one_line_exit_2(tmp_path, content, reason, capsys):
    from tandem.cli import main

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(fingerprint()))
    bad.write_bytes(content)
    assert main(["check", "--compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tandem check: error: {bad}: {reason}"), err


@pytest.mark.parametrize("schema", [99, 0, 2])
def test_a_fingerprint_of_another_schema_is_refused_not_compared(tmp_path, schema, capsys):
    from tandem.cli import main

    good, other = tmp_path / "good.json", tmp_path / "other.json"
    good.write_text(json.dumps(fingerprint()))
    other.write_text(json.dumps({**fingerprint(), "schema": schema}))  # every other field as schema 1 has it
    assert main(["check", "--compare", str(good), str(other)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no table, no "all fields match"
    assert captured.err == (
        f"tandem check: error: {other}: not a tandem fingerprint (schema {schema}, but this tandem reads schema 1 "
        "only); write one with `tandem check`\n"
    )


def test_nested_shapes_are_checked_too():
    from tandem.check.compare import shape_problem

    fp = fingerprint()
    assert shape_problem(fp) is None
    fp["cpu"]["dit"]["losses"] = [1.0, "x"]
    assert shape_problem(fp) == "cpu.dit.losses[1] is str, not float"
    fp = fingerprint()
    fp["gpu"] = {"name": "H100"}
    assert shape_problem(fp) == "gpu.classifier is missing"
    fp = fingerprint()
    del fp["environment"]["distributions"]["locked"]["torch"]["matches_lock"]
    assert shape_problem(fp) == "environment.distributions.locked.torch.matches_lock is missing"


def test_a_missing_fingerprint_is_a_usage_error(tmp_path):
    from tandem.errors import UsageError

    (tmp_path / "a.json").write_text(json.dumps(fingerprint()))
    with pytest.raises(UsageError, match="missing.json: not a readable fingerprint"):
        compare_command([str(tmp_path / "a.json"), str(tmp_path / "missing.json")])


def test_a_package_loaded_from_outside_the_env_fails_the_comparison():
    a, b = fingerprint("local"), fingerprint("modal")
    b["environment"]["distributions"]["locked"]["torch"].update(
        imported_from="/__modal/deps/torch/__init__.py", shadowed=True
    )
    rows = {row.field: row for row in compare_fingerprints([a, b])}
    assert rows["packages from outside the env"].values == ["(none)", "torch"]
    assert bad_fields(a, b) == ["packages from outside the env"]


def test_two_clusters_of_one_shape_match_and_another_shape_is_named():
    a, b, c = fingerprint("cluster-a"), fingerprint("cluster-b"), fingerprint("one")
    for fp, shape in ((a, (16, 2)), (b, (16, 2)), (c, (8, 1))):
        fp["environment"]["distributed"] = {"world_size": shape[0], "nodes": shape[1]}
    assert bad_fields(a, b) == []
    assert bad_fields(a, c) == ["ranks x nodes"]
    assert bad_fields(fingerprint(), c) == ["ranks x nodes"]  # a file from before the field: one process


def test_the_fingerprint_records_torchruns_layout(monkeypatch):
    from tandem.check.environment import distributed_shape

    for name, value in {"RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}.items():
        monkeypatch.setenv(name, value)
    assert distributed_shape() == {"world_size": 16, "nodes": 2}
