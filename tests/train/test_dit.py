import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tandem.errors import UsageError
from tandem.models import DiTConfig, build_dit
from tandem.train import checkpoint, run_training
from tandem.train import dit as dit_module
from tandem.train.run import TrainingDiverged
from tandem.train.samples import grid_layout

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

# What must match bitwise between an interrupted-and-resumed run and an uninterrupted one.
TRAINING_STATE = ("model", "ema", "optimizer", "scheduler", "rng", "step")


def final(result) -> dict:
    return checkpoint.load(Path(result.checkpoint))


def test_interrupted_and_resumed_run_is_bitwise_equal_to_an_uninterrupted_one(dit_config, states_equal):
    full = run_training("dit", dit_config(run_name="full"))
    assert full.status == "completed" and full.step == 6

    first = run_training("dit", dit_config(run_name="resumed", stop_after=3))
    assert first.status == "stopped" and first.step == 3
    second = run_training("dit", dit_config(run_name="resumed", resume=True))
    assert second.status == "completed" and second.step == 6

    a, b = final(full), final(second)
    for key in TRAINING_STATE:
        states_equal(a[key], b[key], key)
    # and the logs of the resumed run read like one run: each step logged once
    records = [json.loads(line) for line in Path(second.run_dir, "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "resumed_from" not in r]
    assert [s for s in steps if s] == [1, 2, 3, 4, 5, 6, 6]  # six steps, then the final record


def test_resume_falls_back_past_a_corrupt_checkpoint(dit_config, states_equal, capsys):
    full = run_training("dit", dit_config(run_name="full"))
    first = run_training("dit", dit_config(run_name="r", stop_after=4, checkpoint_every=2))
    newest = Path(first.checkpoint)
    assert newest.name == "step_0000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash outside our control

    second = run_training("dit", dit_config(run_name="r", resume=True, checkpoint_every=2))
    out = capsys.readouterr().out
    assert "step_0000004.pt is unusable" in out and "resuming step_0000002.pt" in out
    assert (newest.parent / "step_0000004.pt.unusable").exists()  # set aside, not deleted
    for key in TRAINING_STATE:
        states_equal(final(full)[key], final(second)[key], key)


def test_checkpoints_keep_the_last_k(dit_config):
    result = run_training("dit", dit_config(checkpoint_every=1, keep_checkpoints=2))
    names = sorted(p.name for p in Path(result.run_dir, "checkpoints").iterdir())
    assert names == ["step_0000005.pt", "step_0000006.pt"]


def test_run_directory_holds_every_artefact(dit_config):
    result = run_training("dit", dit_config(run_name="art", steps=4, sample_every=2, samples_per_class=3))
    run = Path(result.run_dir)
    assert run.name == "art" and result.status == "completed"

    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "dit" and config["config"]["steps"] == 4
    assert config["device"] == "cpu" and config["torch"] == torch.__version__

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert all({"loss", "lr", "img_per_s", "elapsed_s"} <= r.keys() for r in logged)
    assert records[-1]["final"] is True

    with Image.open(run / "loss_curve.png") as png:
        assert png.format == "PNG"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["latest.png", "step_0000002.png", "step_0000004.png"]
    assert (run / "samples" / "latest.png").read_bytes() == (run / "samples" / "step_0000004.png").read_bytes()
    with Image.open(run / "samples" / "step_0000004.png") as png:
        assert png.size[0] == grid_layout(10, 3, 8, [str(d) for d in range(10)]).size[0]
    assert result.artifacts["samples"] == str(run / "samples" / "step_0000004.png")
    assert Path(result.artifacts["loss_curve"]).exists() and Path(result.checkpoint).exists()


def test_the_settings_the_device_chose_are_recorded_and_the_time_accounted(dit_config, capsys):
    result = run_training("dit", dit_config(run_name="auto", batch_size=0, log_every=0, steps=4, sample_every=2))
    assert "chosen for cpu: --log-every 10, --no-compile, --batch-size 64" in capsys.readouterr().out
    recorded = json.loads(Path(result.run_dir, "config.json").read_text())["config"]
    assert (recorded["batch_size"], recorded["log_every"], recorded["compile"]) == (64, 10, False)

    timing = result.timing
    assert timing["sample_s"] > 0 and timing["checkpoint_s"] > 0 and timing["compile_s"] == 0
    assert timing["loop_s"] >= timing["sample_s"] + timing["checkpoint_s"]
    assert 0 < timing["end_to_end_img_per_s"] < timing["step_img_per_s"]
    final = json.loads(Path(result.run_dir, "metrics.jsonl").read_text().splitlines()[-1])
    assert final["final"] and final["timing"] == timing


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(dit_config, monkeypatch):
    real_loss, calls = dit_module.flow_matching_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(dit_module, "flow_matching_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 5") as err:
        run_training("dit", dit_config(run_name="nan", checkpoint_every=2))
    run = Path(dit_config().runs_dir) / "nan"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002.pt", "step_0000004.pt"]
    assert err.value.checkpoint == run / "checkpoints" / "step_0000004.pt"
    state = checkpoint.load(err.value.checkpoint)  # still valid, and finite
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1] == {"step": 5, "diverged": True}


def test_nan_between_logs_is_still_caught_before_a_checkpoint(dit_config, monkeypatch):
    real_loss, calls = dit_module.flow_matching_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("inf") if len(calls) == 3 else loss

    monkeypatch.setattr(dit_module, "flow_matching_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 3"):
        run_training("dit", dit_config(run_name="inf", log_every=100, checkpoint_every=4))
    assert not list((Path(dit_config().runs_dir) / "inf" / "checkpoints").iterdir())


def test_cpu_threads_apply_during_the_run_only(dit_config, monkeypatch):
    seen = []
    real_loss = dit_module.flow_matching_loss
    monkeypatch.setattr(
        dit_module, "flow_matching_loss", lambda *a, **k: (seen.append(torch.get_num_threads()), real_loss(*a, **k))[1]
    )
    torch.set_num_threads(2)
    try:
        run_training("dit", dit_config(steps=1, cpu_threads=1))
        assert seen == [1] and torch.get_num_threads() == 2
        with pytest.raises(UsageError):  # a run refused after its start also leaves the setting alone
            run_training("dit", dit_config(batch_size=100_000, cpu_threads=1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("shape", [dict(), dict(depth=3, hidden_size=32, num_heads=2), dict(size="S", depth=2)])
def test_the_parameter_count_is_the_built_models(shape):
    config = DiTConfig(image_size=8, patch_size=4, in_channels=1, num_classes=10, **shape)
    assert dit_module.dit_parameters(config) == sum(p.numel() for p in build_dit(config).parameters())


def test_a_model_that_cannot_fit_is_refused_before_it_is_built(dit_config, monkeypatch):
    built, real_build = [], dit_module.build_dit
    monkeypatch.setattr(dit_module, "build_dit", lambda config: (built.append(config.depth), real_build(config))[1])
    config = DiTConfig(image_size=8, patch_size=4, in_channels=1, num_classes=10, depth=100_000)
    with pytest.raises(UsageError) as error:
        dit_module.check_model_memory(dit_config(depth=100_000), config, 32, torch.device("cpu"))
    message = str(error.value)
    assert message.startswith(
        "the DiT of --depth 100000 --hidden-size 192 --heads 6 (66,643,368,976 parameters; --patch-size 4, --batch-size 32) "
        "needs at least 1.3 TB of memory, more than the "
    )
    assert message.endswith("; pass a smaller --depth, --hidden-size or --batch-size")
    assert built == [1]  # counted from a one-block model on the meta device; the deep one never built


def test_a_grid_lost_to_a_kill_is_redrawn_on_resume_and_its_temporary_removed(dit_config, capsys):
    settings = dict(run_name="g", checkpoint_every=2, sample_every=2, samples_per_class=1)
    run_training("dit", dit_config(**settings, stop_after=4))
    samples = Path(dit_config().runs_dir) / "g" / "samples"
    grid = samples / "step_0000004.png"
    drawn = grid.read_bytes()
    # Killed after step 4's checkpoint: while its grid was drawn (none), or written (a temporary left).
    grid.unlink()
    stale = samples / ".step_0000004.png.999999999.tmp"
    stale.write_bytes(drawn[:100])
    capsys.readouterr()

    run_training("dit", dit_config(**settings, resume=True))
    assert f"{grid} is missing: drawing it from the checkpoint's EMA weights" in capsys.readouterr().out
    assert grid.read_bytes() == drawn  # the very grid the killed attempt was drawing
    assert not stale.exists()
    assert sorted(p.name for p in samples.iterdir()) == [
        "latest.png",
        "step_0000002.png",
        "step_0000004.png",
        "step_0000006.png",
    ]
