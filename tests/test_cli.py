"""The command line: bad settings and locks (one line on stderr, exit 2, nothing written), and what the small
commands import."""

import shutil
import subprocess
import sys

import pytest

from support import copy_project, edit
from tandem.cli import main

BAD = [
    ("unknown key", 'modal_gpu = "H100"', 'modal_gpu = "H100"\ncolour = "blue"', "unknown key 'colour'"),
    ("secret env", 'PYTHONUNBUFFERED = "1"', 'PYTHONUNBUFFERED = "1"\nHF_TOKEN = "hf_x"', "HF_TOKEN looks like a secret"),
    ("number env", 'PYTHONUNBUFFERED = "1"', "PYTHONUNBUFFERED = 1", "quote it"),
    ("relative path", 'runs_dir = "/runs"', 'runs_dir = "runs"', "runs_dir must be an absolute path"),
    ("bad uv", 'uv_version = "0.13.9"', 'uv_version = "latest"', "uv_version must be"),
    ("python mismatch", 'python = "3.11"', 'python = "3.12"', "is Python 3.11 but python is '3.12'"),
    ("bad toml", "[tool.tandem.image]", "[tool.tandem.image", "not valid TOML"),
]  # fmt: skip
BAD_LOCK = [
    ("unpinned", "tqdm>=4\n", "not pinned with '=='"),
    ("no hashes", "tqdm==4.66.0\n", "has no --hash lines"),
    ("bad hash", "tqdm==4.66.0 --hash=sha256:ZZZZ\n", "not sha256:<64 hex digits>"),
]


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", [["render"], ["render", "--check"], ["parity"]])
@pytest.mark.parametrize(("name", "old", "new", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_settings(tmp_path, capsys, command, name, old, new, message):
    root = copy_project(tmp_path)
    edit(root / "pyproject.toml", old, new)
    before = snapshot(root)
    assert main([*command, "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert snapshot(root) == before


@pytest.mark.parametrize("command", [["render"], ["parity"]])
@pytest.mark.parametrize(("name", "lock", "message"), BAD_LOCK, ids=[b[0] for b in BAD_LOCK])
def test_bad_lock(tmp_path, capsys, name, lock, message, command):
    root = copy_project(tmp_path)
    (root / "requirements-modal.txt").write_text(lock)
    before = snapshot(root)
    assert main([*command, "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and "requirements-modal.txt:1" in err and err.count("\n") == 1
    assert snapshot(root) == before


@pytest.mark.parametrize("command", [["render"], ["parity"]])
def test_binary_lock(tmp_path, capsys, command):
    root = copy_project(tmp_path)
    (root / "requirements-modal.txt").write_bytes(bytes(range(256)))
    before = snapshot(root)
    assert main([*command, "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert "requirements-modal.txt is not a text file" in err and err.count("\n") == 1
    assert snapshot(root) == before


@pytest.mark.parametrize("command", [["render"], ["render", "--check"], ["parity"], ["lock", "--check"]])
def test_a_tool_key_that_is_not_a_table(tmp_path, capsys, command):
    root = copy_project(tmp_path)
    text = (root / "pyproject.toml").read_text().replace("[tool.tandem.image", "[moved.image")
    (root / "pyproject.toml").write_text(text + '\n[tool]\ntandem = "x"\n')
    before = snapshot(root)
    assert main([*command, "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert "tool.tandem is 'x', not a table; it must hold the [tool.tandem.image] table" in err
    assert err.count("\n") == 1 and snapshot(root) == before


def test_render_refuses_a_file_where_a_directory_goes(tmp_path, capsys):
    root = copy_project(tmp_path)
    shutil.rmtree(root / "docker")
    (root / "docker").write_text("a file")
    before = snapshot(root)
    assert main(["render", "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {root / 'docker' / 'Dockerfile'}: {root / 'docker'} is not a folder" in err
    assert err.count("\n") == 1 and snapshot(root) == before


def test_missing_files(tmp_path, capsys):
    root = copy_project(tmp_path)
    (root / "requirements-modal.txt").unlink()
    assert main(["render", "--project", str(root)]) == 2
    assert "run `tandem lock`" in capsys.readouterr().err
    assert main(["parity", "--project", str(tmp_path / "nowhere")]) == 2
    assert "pyproject.toml not found" in capsys.readouterr().err


# Runs the CLI in a fresh interpreter, then prints the heavy modules it ended up importing.
IMPORTS_PROBE = """
import sys
from tandem.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "torchvision", "matplotlib", "tensorboard", "wandb") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["train", "dit", "--help"], ["sample", "--help"], ["check", "--help"], ["doctor"]],
)
def test_small_commands_import_no_torch(argv, tmp_path):
    # PATH without nvidia-smi: `tandem doctor` on a machine with no NVIDIA driver
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.splitlines()[-1] == "HEAVY []", done.stdout + done.stderr


@pytest.mark.parametrize(("damage", "message"), [("binary", "is not a text file"), ("missing", "not found")])
def test_parity_with_a_damaged_dockerfile(tmp_path, capsys, damage, message):
    root = copy_project(tmp_path)
    dockerfile = root / "docker" / "Dockerfile"
    dockerfile.write_bytes(bytes(range(256))) if damage == "binary" else dockerfile.unlink()
    assert main(["parity", "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"{dockerfile} {message}: run `tandem render`" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "typed", "meant"),
    [
        (["train", "dit", "--step", "5"], "--step 5", "--steps"),
        (["train", "classifier", "--epoch", "2"], "--epoch 2", "--epochs"),
        (["sample", "--run", "r", "--cfg", "2"], "--cfg 2", "--cfg-scale"),
        (["runs", "--js"], "--js", "--json"),
    ],
)
def test_a_flag_is_spelled_out_never_abbreviated(argv, typed, meant, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"unrecognized arguments: {typed} (did you mean {meant}?)" in capsys.readouterr().err


# What a command imported by the time it ended (its work done), printed by the interpreter's exit.
EXIT_PROBE = """
import atexit, sys
from tandem.cli import main
atexit.register(lambda: print("IMPORTED", sorted(m for m in {names!r} if m in sys.modules)))
main(sys.argv[1:])
"""


@pytest.mark.training  # a trainer process
def test_train_and_sample_import_what_they_need_only(tmp_path):
    """No scikit-learn for the digits (its CSV and split are read as they are), no TensorBoard with
    --loggers none, and none of matplotlib, TensorBoard or torch._dynamo to sample."""
    names = ("sklearn", "tensorboard", "torchvision", "matplotlib", "torch._dynamo", "wandb")
    quick = ["--device", "cpu", "--steps", "1", "--runs-dir", str(tmp_path), "--samples-per-class", "1"]

    def imported(argv):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_PROBE.format(names=names), *argv], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    train = imported(["train", "dit", *quick, "--run-name", "r", "--loggers", "none", "--sample-steps", "1"])
    # matplotlib for the loss curve at the end; torch._dynamo, which torch.optim needs, with the optimizers
    assert train == "IMPORTED ['matplotlib', 'torch._dynamo']"
    sample = imported(["sample", "--run", str(tmp_path / "r"), "--device", "cpu", "--sample-steps", "1"])
    assert sample == "IMPORTED []"
