import json
import os
import subprocess
import sys

import pytest

from tandem.errors import UsageError
from tandem.train import checkpoint, distributed
from tandem.train.flags import config_to_argv


def torchrun(nproc: int, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "tandem"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.training
def test_two_gloo_ranks_train_in_step_and_only_rank_0_writes(dit_config, runs_dir):
    config = dit_config(run_name="ddp", steps=4, checkpoint_every=2)
    done = torchrun(2, ["train", "dit", *config_to_argv(config)])
    assert done.returncode == 0, done.stdout + done.stderr

    assert [p.name for p in runs_dir.iterdir()] == ["ddp"]
    run = runs_dir / "ddp"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # one writer: no duplicates
    final = records[-1]
    assert final["ranks_identical"] is True
    assert len(final["rank_weight_digests"]) == 2 and len(set(final["rank_weight_digests"])) == 1
    assert done.stdout.count("device: cpu") == 1  # only rank 0 prints

    state = checkpoint.load(run / "checkpoints" / "step_0000004.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    noise = [rank["generators"]["noise"] for rank in state["rng"]]
    assert not noise[0].equal(noise[1])  # each rank draws its own noise
    assert json.loads((run / "config.json").read_text())["world_size"] == 2


@pytest.mark.slow
@pytest.mark.training
def test_two_rank_run_resumes_bitwise(dit_config, runs_dir, states_equal):
    full = torchrun(2, ["train", "dit", *config_to_argv(dit_config(run_name="full"))])
    assert full.returncode == 0, full.stderr
    part = torchrun(2, ["train", "dit", *config_to_argv(dit_config(run_name="part", stop_after=3))])
    assert part.returncode == 0, part.stderr
    rest = torchrun(2, ["train", "dit", *config_to_argv(dit_config(run_name="part", resume=True))])
    assert rest.returncode == 0, rest.stderr
    a = checkpoint.load(runs_dir / "full" / "checkpoints" / "step_0000006.pt")
    b = checkpoint.load(runs_dir / "part" / "checkpoints" / "step_0000006.pt")
    for key in ("model", "ema", "optimizer", "rng"):
        states_equal(a[key], b[key], key)


LAYOUT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def test_a_process_torchrun_did_not_start_is_one_rank(monkeypatch):
    for name in LAYOUT:
        monkeypatch.delenv(name, raising=False)
    layout = distributed.from_environment()
    assert (layout.world_size, layout.nodes, layout.is_main, layout.enabled) == (1, 1, True, False)


def test_the_layout_torchrun_sets_over_two_nodes(monkeypatch):
    for name, value in zip(LAYOUT, ("5", "8", "1", "4", "1"), strict=True):
        monkeypatch.setenv(name, value)
    layout = distributed.from_environment()
    assert (layout.rank, layout.world_size, layout.nodes, layout.node_rank) == (5, 8, 2, 1)
    assert layout.describe() == "2 nodes x 4 ranks"


def test_uneven_nodes_are_refused(monkeypatch):
    for name, value in zip(LAYOUT, ("0", "6", "0", "4", "0"), strict=True):
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match="WORLD_SIZE 6 is not a multiple of LOCAL_WORLD_SIZE 4"):
        distributed.from_environment()


def test_the_collective_timeout(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_VARIABLE, raising=False)
    assert distributed.collective_timeout().total_seconds() == 600
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "45")
    assert distributed.collective_timeout().total_seconds() == 45
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(UsageError, match="TANDEM_COLLECTIVE_TIMEOUT='soon': give the seconds"):
        distributed.collective_timeout()
