import json
from pathlib import Path

import pytest
from PIL import Image

from tandem.cli import main
from tandem.errors import UsageError
from tandem.train import loggers, run_training
from tandem.train.config import DiTTrainConfig
from tandem.train.flags import config_to_argv

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

needs_tensorboard = pytest.mark.skipif(not loggers.installed("tensorboard"), reason="tensorboard is not installed")
needs_wandb = pytest.mark.skipif(not loggers.installed("wandb"), reason="wandb is not installed")


def metrics(run_dir: str) -> list[dict]:
    return [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_loggers_add_to_tensorboard_never_replace_it(monkeypatch):
    monkeypatch.setattr(loggers, "installed", lambda name: True)
    assert loggers.chosen("auto") == ["tensorboard"]
    assert loggers.chosen("wandb") == ["tensorboard", "wandb"]  # as well, as README says
    assert loggers.chosen("wandb, tensorboard,wandb") == ["tensorboard", "wandb"]
    assert loggers.chosen("none") == []
    assert loggers.chosen("none,wandb") == ["wandb"]  # W&B alone, asked for in so many words
    with pytest.raises(UsageError, match="unknown logger 'tb'"):
        loggers.chosen("tb")
    monkeypatch.setattr(loggers, "installed", lambda name: False)
    assert loggers.chosen("auto") == []  # tensorboard absent: auto quietly logs to metrics.jsonl only
    assert loggers.chosen("wandb") == ["wandb"]


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_an_explicit_logger_that_is_not_installed_is_one_line_before_anything_is_written(
    name, monkeypatch, dit_config, runs_dir, capsys
):
    monkeypatch.setattr(loggers, "installed", lambda package: package != name)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["train", "dit", *config_to_argv(dit_config()), "--loggers", name]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"tandem train: error: --loggers {name}: the {name} package is not installed; `uv pip install {name}` or drop it"
    )
    assert not any(runs_dir.iterdir())


def test_wandb_without_a_key_is_refused_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(loggers, "installed", lambda name: True)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.com login x password y\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(UsageError, match="set WANDB_API_KEY"):
        loggers.check("wandb")
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")  # what `wandb login` writes
    assert loggers.check("wandb") == ["tensorboard", "wandb"]
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert loggers.check("wandb") == ["tensorboard", "wandb"]


@needs_tensorboard
def test_tensorboard_events_hold_what_metrics_jsonl_holds(dit_config):
    result = run_training("dit", dit_config(run_name="tb", loggers="tensorboard"))
    scalars = tensorboard_scalars(result.run_dir)
    logged = [r for r in metrics(result.run_dir) if "loss" in r]
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in scalars["loss"]] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert [v for _, v in scalars["lr"]] == pytest.approx([r["lr"] for r in logged], rel=1e-6)
    assert {"grad_norm", "img_per_s", "elapsed_s"} <= scalars.keys()


@needs_tensorboard
def test_tensorboard_after_a_resume_has_each_step_once(dit_config, capsys):
    first = run_training("dit", dit_config(run_name="tb", loggers="tensorboard", stop_after=4, checkpoint_every=2))
    Path(first.checkpoint).unlink()  # as if it died after logging step 4 but before checkpointing it
    second = run_training("dit", dit_config(run_name="tb", loggers="tensorboard", resume=True, checkpoint_every=2))
    assert "resuming step_0000002.pt" in capsys.readouterr().out  # steps 3 and 4 are redone
    assert [step for step, _ in tensorboard_scalars(second.run_dir)["loss"]] == [1, 2, 3, 4, 5, 6]


@needs_tensorboard
def test_default_is_tensorboard_and_none_writes_no_events(dit_config):
    on = run_training("dit", dit_config(run_name="on", steps=2))
    off = run_training("dit", dit_config(run_name="off", steps=2, loggers="none"))
    assert list(Path(on.run_dir).glob("events.out.tfevents.*"))
    assert not list(Path(off.run_dir).glob("events.out.tfevents.*"))


@needs_tensorboard
def test_tensorboard_names_runs_by_their_names_and_shows_grids_and_hparams(dit_config, runs_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    result = run_training("dit", dit_config(run_name="grids", sample_every=3, loggers="tensorboard"))
    runs = EventMultiplexer().AddRunsFromDirectory(str(runs_dir))  # as `tensorboard --logdir runs` reads them
    assert list(runs.Runs()) == ["grids"]
    events = EventAccumulator(result.run_dir, size_guidance={"images": 0})
    events.Reload()
    grids = events.Images("samples")
    # the grids of samples/: 2 columns, 10 rows of 48-pixel tiles under a caption
    assert [(g.step, g.width, g.height) for g in grids] == [(3, 122, 582), (6, 122, 582)]
    assert Image.open(Path(result.run_dir, "samples", "step_0000003.png")).size == (122, 582)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    ).session_start_info
    assert start.hparams["lr"].number_value == DiTTrainConfig().lr and start.hparams["solver"].string_value == "euler"
    assert start.hparams["depth"].number_value == 6  # the settings as trained
    final_loss = [r["loss"] for r in metrics(result.run_dir) if "loss" in r][-1]
    assert [(e.step, e.value) for e in events.Scalars("hparams/loss")] == [(6, pytest.approx(final_loss, rel=1e-6))]


@needs_wandb
def test_wandb_offline_run_is_written_in_the_run_directory(monkeypatch, dit_config, runs_dir, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    argv = [
        "train",
        "dit",
        *config_to_argv(dit_config(run_name="wb")),
        "--loggers",
        "wandb",
        "--wandb-project",
        "tandem-test",
    ]
    assert main(argv) == 0
    import wandb

    wandb.teardown()  # the wandb service process writes the file; this waits for it, as the process's exit does
    run = runs_dir / "wb"
    run_id = (run / "wandb" / "run-id").read_text().strip()
    (data,) = (run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    payload = data.read_bytes()
    assert b"tandem-test" in payload and b"grad_norm" in payload and b"loss" in payload
    assert b"hparams/loss" in payload  # the final metrics beside the settings
    grids = list(data.parent.glob("files/media/images/samples_*.png"))
    assert len(grids) == 1  # the final grid (this run samples at its end only)
    assert list(run.glob("events.out.tfevents.*"))  # W&B as well as TensorBoard
