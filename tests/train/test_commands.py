import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from tandem.cli import main
from tandem.train import checkpoint, run_training
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig
from tandem.train.samples import grid_layout

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

DIGITS = [str(d) for d in range(10)]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes: to prove a command wrote nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture
def existing_run(dit_config):
    """A finished DiT run named 'old' (patch size 4) with its checkpoint."""
    return run_training("dit", dit_config(run_name="old", steps=1))


BAD_INPUT = [
    # (argv after `tandem`, text the one-line error must contain)
    (["train", "dit", "--dataset", "nope"], "--dataset"),
    (["train", "classifier", "--arch", "vgg"], "--arch"),
    (["train", "dit", "--steps", "0"], "--steps"),
    (["train", "dit", "--steps", "-5"], "--steps"),
    (["train", "classifier", "--epochs", "0"], "--epochs"),
    (["train", "dit", "--batch-size", "5000"], "--batch-size"),
    (["train", "classifier", "--batch-size", "5000"], "--batch-size"),
    (["train", "dit", "--image-size", "10", "--patch-size", "4"], "--patch-size"),
    (["train", "dit", "--patch-size", "3"], "--patch-size"),  # digits are 8x8
    (["train", "dit", "--device", "cuda"], "--device"),
    (["train", "dit", "--resume", "--runs-dir", "{empty}"], "--resume"),
    (["train", "dit", "--resume", "--run-name", "never"], "--resume"),
    (["train", "dit", "--resume", "--run-name", "old", "--patch-size", "2"], "recorded --patch-size 4"),
    (["train", "dit", "--resume", "--run-name", "old", "--size", "S"], "--size"),
    (["train", "classifier", "--resume", "--run-name", "old"], "is a dit run"),
    (["train", "dit", "--run-name", "old"], "--resume"),
    (["train", "dit", "--classifier-checkpoint", "missing.pt"], "--classifier-checkpoint"),
    (["train", "dit", "--classifier-checkpoint", "{old_checkpoint}"], "--classifier-checkpoint"),
    (["train", "dit", "--dataset", "imagefolder"], "--folder"),
    (["train", "dit", "--runs-dir", "{a_file}/runs"], "--runs-dir"),
    (["sample", "--checkpoint", "missing.pt"], "--checkpoint"),
    (["sample", "--run", "{runs_dir}"], "--run"),
    (["sample", "--run", "{old_run}", "--samples-per-class", "0"], "--samples-per-class"),
    (["train", "dit", "--seed", "99999999999999999999"], "--seed must be between 0 and 2**63 - 1"),
    (["train", "classifier", "--seed", "-1"], "--seed"),
    (["train", "dit", "--image-size", "100000"], "--image-size 100000 needs at least"),
    (["train", "classifier", "--image-size", "100000"], "pass a smaller --image-size"),
    (["train", "dit", "--samples-per-class", "1000000000"], "--samples-per-class 1000000000 needs at least"),
    (["train", "dit", "--cfg-scale", "nan"], "--cfg-scale must be a finite number"),
    (["train", "classifier", "--lr", "inf"], "--lr must be a finite number"),
    (["train", "dit", "--run-name", "../x"], "--run-name '../x' is not a plain directory name"),
    (["train", "dit", "--run-name", "{a_file_name}", "--runs-dir", "{tmp}"], "is a file, not a run"),
    (["train", "dit", "--hidden-size", "100"], "--hidden-size 100 must be a multiple of 4 and of --heads 6"),
    (["train", "dit", "--heads", "-1"], "--heads"),
    (["train", "dit", "--config", "{bad_key_toml}"], "unknown key 'nope'"),
    (["train", "dit", "--config", "{wrong_type_toml}"], "steps = '3' is not an integer"),
    (["train", "dit", "--config", "missing.toml"], "--config missing.toml: cannot read it"),
    (["train", "classifier", "--config", "{old_run}/config.json"], "is a dit run"),
    (["sample", "--run", "{old_run}", "--out", "{runs_dir}"], "is a directory"),
    (["sample", "--run", "{old_run}", "--out", "{old_run}/config.json"], "ending in .png"),
    (["sample", "--run", "{old_run}", "--cfg-scale", "nan"], "--cfg-scale must be a finite number"),
    (
        ["sample", "--run", "{old_run}", "--samples-per-class", "1000000000"],
        "--samples-per-class 1000000000 needs at least",
    ),
    (["sample", "--run", "{old_run}", "--sample-steps", "0"], "--sample-steps"),
    (["sample", "--run", "{old_run}", "--cfg-scale", "-1"], "--cfg-scale"),
    (["sample", "--run", "{old_run}", "--out", "{a_png}"], "already exists"),
    # resource-shaped flags, bounded before anything is written
    (
        ["train", "dit", "--depth", "100000"],
        "the DiT of --depth 100000 --hidden-size 192 --heads 6 (66,643,368,976 param",
    ),
    (
        ["train", "dit", "--hidden-size", "400000", "--heads", "1"],
        "the DiT of --depth 6 --hidden-size 400000 --heads 1",
    ),
    (["train", "classifier", "--width", "100000"], "the classifier of --arch airbench --width 100000"),
    (["train", "dit", "--cpu-threads", "100000"], "--cpu-threads must be between 0 (one per core) and the"),
    (["train", "classifier", "--cpu-threads", "100000"], "--cpu-threads must be between 0"),
    (["sample", "--run", "{old_run}", "--cpu-threads", "100000"], "--cpu-threads must be between 0"),
    (["train", "dit", "--sample-steps", "10000000"], "--sample-steps must be between 1 and 1000"),
    (["sample", "--run", "{old_run}", "--sample-steps", "10000000"], "--sample-steps must be between 1 and 1000"),
    (["sample", "--run", "{old_run}", "--seed", "99999999999999999999"], "--seed must be between 0 and 2**63 - 1"),
    (["sample", "--run", "{old_run}", "--seed", "-1"], "--seed must be between 0 and 2**63 - 1"),
    (["train", "classifier", "--translate", "1000"], "--translate 1000 must be smaller than the image size"),
    (["train", "dit", "--run-name", "a" * 300], "--run-name is 300 characters long; use at most 100"),
    (["train", "dit", "--runs-dir", "/proc/x"], "--runs-dir /proc/x: cannot create"),
]


@pytest.mark.parametrize("argv, expected", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    argv, expected, fast_flags, runs_dir, tmp_path, request, capsys
):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "grid.png").write_bytes(b"an earlier grid")
    (tmp_path / "bad_key.toml").write_text("steps = 3\nnope = 1\n")
    (tmp_path / "wrong_type.toml").write_text('steps = "3"\n')
    values = {
        "runs_dir": runs_dir,
        "empty": tmp_path / "empty",
        "a_file": tmp_path / "file",
        "a_file_name": "file",
        "a_png": tmp_path / "grid.png",
        "tmp": tmp_path,
        "bad_key_toml": tmp_path / "bad_key.toml",
        "wrong_type_toml": tmp_path / "wrong_type.toml",
    }
    if any("old" in a for a in argv):
        existing = request.getfixturevalue("existing_run")
        values.update(old_checkpoint=existing.checkpoint, old_run=existing.run_dir)
    argv = [a.format(**values) for a in argv]
    if argv[0] == "train":  # the fast settings first: the case's own flags come later and win
        argv = argv[:2] + fast_flags(argv[1]) + argv[2:]
    before = snapshot(runs_dir)
    capsys.readouterr()

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert snapshot(runs_dir) == before


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train", "dit", "--steps", "many"], "--steps"),
        (["train", "dit", "--solver", "rk4"], "--solver"),
        (["sample"], "--checkpoint"),
    ],
)
def test_argparse_errors_exit_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("kind, cls", [("dit", DiTTrainConfig), ("classifier", ClassifierTrainConfig)])
def test_train_help_lists_every_config_field(kind, cls, capsys):
    with pytest.raises(SystemExit):
        main(["train", kind, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in text


def test_train_then_sample_from_the_command_line(fast_flags, runs_dir, tmp_path, capsys):
    assert main(["train", "dit", *fast_flags(run_name="cli", steps=2)]) == 0
    run = runs_dir / "cli"
    assert (run / "checkpoints" / "step_0000002.pt").exists()

    trained = (run / "samples" / "latest.png").read_bytes()  # training's newest grid
    sample = ["sample", "--run", str(run), "--samples-per-class", "3", "--sample-steps", "2", "--device", "cpu"]
    assert main(sample) == 0
    first = run / "samples" / f"sample_step_0000002_euler_2steps_cfg{DiTTrainConfig().cfg_scale:g}_seed0_3per-class.png"
    with Image.open(first) as png:  # 48-pixel tiles, labels 0-9 beside them, a caption above
        assert png.size[0] == grid_layout(10, 3, 8, DIGITS).size[0] and png.size[1] > 10 * 50
    assert (run / "samples" / "latest.png").read_bytes() == trained  # still training's

    out = tmp_path / "elsewhere" / "grid.png"
    out.parent.mkdir()  # --out never makes a folder
    checkpoint_path = run / "checkpoints" / "step_0000002.pt"
    argv = ["sample", "--checkpoint", str(checkpoint_path), "--solver", "heun", "--cfg-scale", "1", "--no-ema"]
    assert main([*argv, "--samples-per-class", "1", "--out", str(out), "--device", "cpu"]) == 0
    with Image.open(out) as png:
        assert png.size[0] == grid_layout(10, 1, 8, DIGITS).size[0]
    assert str(out) in capsys.readouterr().out
    assert (run / "samples" / "latest.png").read_bytes() == trained


def test_a_config_file_reruns_or_varies_a_run(fast_flags, runs_dir, tmp_path):
    assert main(["train", "dit", *fast_flags(run_name="base", steps=2, seed=7, lr=0.003)]) == 0
    base = json.loads((runs_dir / "base" / "config.json").read_text())["config"]

    # A run's config.json: its settings, under a new name; the flags given win.
    argv = ["train", "dit", "--config", str(runs_dir / "base" / "config.json"), "--run-name", "again", "--steps", "3"]
    assert main(argv) == 0
    again = json.loads((runs_dir / "again" / "config.json").read_text())["config"]
    assert again == {**base, "run_name": "again", "steps": 3}

    # A TOML file of settings, flag names with dashes or underscores.
    toml = tmp_path / "small.toml"
    toml.write_text('seed = 9\nsteps = 1\nbatch-size = 16\nsolver = "euler"\nsample_every = 0\n')
    argv = ["train", "dit", "--config", str(toml), "--runs-dir", str(runs_dir), "--run-name", "t", "--device", "cpu"]
    assert main([*argv, "--samples-per-class", "1", "--sample-steps", "1"]) == 0
    t = json.loads((runs_dir / "t" / "config.json").read_text())["config"]
    assert (t["seed"], t["steps"], t["batch_size"], t["solver"], t["samples_per_class"]) == (9, 1, 16, "euler", 1)


def test_dit_shape_beyond_the_presets(dit_config):
    result = run_training("dit", dit_config(run_name="shape", steps=1, depth=2, hidden_size=64, heads=4))
    state = checkpoint.load(Path(result.checkpoint))
    shape = {k: state["model_config"][k] for k in ("depth", "hidden_size", "num_heads")}
    assert shape == {"depth": 2, "hidden_size": 64, "num_heads": 4}
    blocks = {key.split(".")[1] for key in state["model"] if key.startswith("blocks.")}
    assert blocks == {"0", "1"}
    assert state["model"]["x_embedder.weight"].shape[0] == 64
    assert state["model"]["blocks.0.attn.qkv.weight"].shape == (192, 64)


def test_the_same_settings_point_at_their_grid_and_force_draws_it_again(existing_run, capsys):
    run = Path(existing_run.run_dir)
    base = ["sample", "--run", str(run), "--samples-per-class", "1", "--sample-steps", "1", "--device", "cpu"]
    for extra in (["--cfg-scale", "2"], ["--cfg-scale", "4"], ["--cfg-scale", "4"]):
        assert main([*base, *extra]) == 0
    grid = run / "samples" / "sample_step_0000001_euler_1steps_cfg4_seed0_1per-class.png"
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{grid} has these settings already; open it, or pass another --seed for new noise "
        "(--force draws this grid again as a new file)"
    )
    assert main([*base, "--cfg-scale", "4", "--force"]) == 0
    assert main([*base, "--cfg-scale", "4", "--seed", "1"]) == 0
    names = sorted(p.name for p in (run / "samples").glob("sample_*.png"))
    assert names == [
        "sample_step_0000001_euler_1steps_cfg2_seed0_1per-class.png",
        "sample_step_0000001_euler_1steps_cfg4_seed0_1per-class-2.png",
        "sample_step_0000001_euler_1steps_cfg4_seed0_1per-class.png",
        "sample_step_0000001_euler_1steps_cfg4_seed1_1per-class.png",
    ]
    again = run / "samples" / "sample_step_0000001_euler_1steps_cfg4_seed0_1per-class-2.png"
    assert again.read_bytes() == grid.read_bytes()  # --force: the same noise, the same grid, asked for
    trained = run / "samples" / "step_0000001.png"  # the grid training drew at its end
    assert (run / "samples" / "latest.png").read_bytes() == trained.read_bytes()


@pytest.mark.parametrize(
    "argv, usage, hint",
    [
        (["sample", "--run", "r", "--per-class", "3"], "usage: tandem sample", "--samples-per-class"),
        (["train", "dit", "--stepz", "3"], "usage: tandem train dit", "--steps"),
        (["doctor", "--json", "--tagret", "local"], "usage: tandem doctor", "--target"),
    ],
)
def test_a_misspelled_flag_shows_its_subcommands_usage(argv, usage, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert f"unrecognized arguments: {' '.join(argv[-2:])} (did you mean {hint}?)" in err


def test_sample_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "--sample-steps N ODE solver steps, 1 to 1000 (default: the run's --sample-steps)" in text
    assert "--seed SEED seed of the sampling noise, 0 to 2**63 - 1 (default: 0)" in text
    assert "--samples-per-class N grid columns (default: 8)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("tandem 0.")


def test_sample_takes_a_run_name_or_a_path(existing_run, monkeypatch, tmp_path, capsys):
    run = Path(existing_run.run_dir)
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(run.parent))
    monkeypatch.chdir(tmp_path)  # the name is not a path from here
    base = ["sample", "--samples-per-class", "1", "--sample-steps", "1", "--device", "cpu"]
    assert main([*base, "--run", run.name]) == 0
    assert main([*base, "--run", str(run), "--seed", "1"]) == 0
    names = sorted(p.name for p in (run / "samples").glob("sample_*.png"))
    assert [n.rsplit("_seed", 1)[1] for n in names][-2:] == ["0_1per-class.png", "1_1per-class.png"]
    assert main([*base, "--run", "no-such-run"]) == 2
    assert capsys.readouterr().err == (
        f"tandem sample: error: --run no-such-run: no such run in {run.parent}; its dit runs, newest first: old\n"
    )


def test_a_length_in_epochs_for_the_dit_and_in_steps_for_the_classifier(fast_flags, runs_dir, capsys):
    dit = fast_flags(run_name="dit-epochs", steps=0, epochs=1, batch_size=256)  # 1,437 images: 5 steps
    assert main(["train", "dit", *dit]) == 0
    record = json.loads((runs_dir / "dit-epochs" / "config.json").read_text())
    assert (record["config"]["steps"], record["config"]["epochs"], record["total_steps"]) == (0, 1, 5)
    classifier = fast_flags("classifier", run_name="clf-steps", steps=3, epochs=0)
    assert main(["train", "classifier", *classifier]) == 0
    record = json.loads((runs_dir / "clf-steps" / "config.json").read_text())
    assert (record["config"]["steps"], record["config"]["epochs"], record["total_steps"]) == (3, 0, 3)
    assert "completed at step 3" in capsys.readouterr().out


def test_a_run_is_taken_where_a_checkpoint_is_asked_for(fast_flags, runs_dir, existing_run, monkeypatch):
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(runs_dir))
    assert main(["train", "classifier", *fast_flags("classifier", run_name="judge", epochs=1)]) == 0
    argv = [*fast_flags(run_name="judged", steps=1, eval_samples=20), "--classifier-checkpoint", "latest"]
    assert main(["train", "dit", *argv]) == 0
    record = json.loads((runs_dir / "judged" / "config.json").read_text())
    assert Path(record["config"]["classifier_checkpoint"]).parent == runs_dir / "judge" / "checkpoints"
    assert main(["sample", "--checkpoint", str(runs_dir / "old"), "--samples-per-class", "1", "--device", "cpu"]) == 0


def test_sample_out_in_a_missing_folder_is_refused_and_no_folder_made(tmp_path, capsys):
    out = tmp_path / "nonexistent" / "dir" / "x.png"
    assert main(["sample", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"tandem sample: error: cannot write {out}: there is no folder {out.parent}; create it first\n"
    assert not (tmp_path / "nonexistent").exists()


def test_sample_from_a_read_only_run_is_one_line_before_sampling(existing_run, tmp_path, capsys):
    from support import read_only_mount

    run = Path(existing_run.run_dir)
    files = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with read_only_mount(tmp_path / "ro-run", files) as ro:
        before = sorted(str(p) for p in ro.rglob("*"))
        capsys.readouterr()
        argv = ["sample", "--run", str(ro), "--samples-per-class", "1", "--sample-steps", "1", "--device", "cpu"]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert sorted(str(p) for p in ro.rglob("*")) == before
    folder = ro / "samples" if any(name.startswith("samples/") for name in files) else ro
    assert captured.err == (
        f"tandem sample: error: cannot write {ro / 'samples' / f'sample_step_0000001_euler_1steps_cfg{DiTTrainConfig().cfg_scale:g}_seed0_1per-class.png'}: {folder} is on a read-only file system\n"
    )
    assert "device:" not in captured.out  # refused before the model was moved or sampled
