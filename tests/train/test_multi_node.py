"""Two nodes on this machine with the real launcher: `tandem train --nodes 2` on each "node" (torchrun,
static rendezvous on 127.0.0.1, gloo ranks on the CPU) trains exactly as one node of two ranks, and a
node lost mid-run ends the attempt on the other node within seconds; both resume bitwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_app.supervisor import ProcessTree
from support import free_port, wait_for
from tandem.train import checkpoint
from tandem.train.config import DiTTrainConfig
from tandem.train.flags import config_to_argv

pytestmark = pytest.mark.training

STEPS = 12
KEPT = ("model", "ema", "optimizer", "scheduler", "rng")


def start(config, *launch: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TANDEM_COLLECTIVE_TIMEOUT": "60"}
    command = [sys.executable, "-m", "tandem", "train", "dit", *config_to_argv(config), *launch]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )


def two_nodes(config) -> list[subprocess.Popen]:
    master = f"127.0.0.1:{free_port()}"
    return [start(config, "--nodes", "2", "--node-rank", str(r), "--master-addr", master) for r in (0, 1)]


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in procs:  # past the deadline: every node's tree ends, and its output tells why
        if p.poll() is None:
            ProcessTree(p.pid).kill()
    outs = [p.communicate()[0] for p in procs]
    assert time.monotonic() < deadline, "a node hung:\n" + "\n-----\n".join(outs)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    return outs


def losses(run) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def final_state(run) -> dict:
    state = checkpoint.load(run / "checkpoints" / f"step_{STEPS:07d}.pt")
    return {key: state[key] for key in KEPT}


# The settings of every run here: tiny, CPU, deterministic, a checkpoint every 4 steps.
RUN = dict(patch_size=4, batch_size=16, steps=STEPS, warmup_steps=2, log_every=1, checkpoint_every=4,
           sample_every=0, samples_per_class=2, sample_steps=2, solver="euler", device="cpu", deterministic=True)  # fmt: skip


def config_for(root: Path, name: str, **overrides) -> DiTTrainConfig:
    return DiTTrainConfig(**{**RUN, "runs_dir": str(root / "runs"), "data_dir": str(root / "data"),
                             "run_name": name, **overrides})  # fmt: skip


@pytest.fixture(scope="module")
def one_node_of_two(tmp_path_factory):
    """The reference: one node, two ranks (`--gpus 2`)."""
    root = tmp_path_factory.mktemp("reference")
    finish([start(config_for(root, "one"), "--gpus", "2")])
    return root / "runs" / "one"


def test_two_nodes_of_one_rank_train_bitwise_as_one_node_of_two(tmp_path, runs_dir, one_node_of_two, states_equal):
    outs = finish(two_nodes(config_for(tmp_path, "two")))
    assert [p.name for p in runs_dir.iterdir()] == ["two"]  # one run, one writer
    run = runs_dir / "two"
    assert losses(run) == losses(one_node_of_two)
    states_equal(final_state(run), final_state(one_node_of_two))
    record = json.loads((run / "config.json").read_text())
    assert (record["world_size"], record["nodes"]) == (2, 2)
    assert "rank 0 of 2 nodes x 1 rank" in outs[0]
    assert "node 1 of 2: ranks 1-1 on cpu, training with node 0, which writes the run" in outs[1]
    assert "step " not in outs[1]  # progress is node 0's


def test_a_node_lost_mid_run_ends_the_attempt_and_both_resume_bitwise(
    tmp_path, runs_dir, one_node_of_two, states_equal
):
    config = config_for(tmp_path, "lost")
    node0, node1 = two_nodes(config)
    trees = [ProcessTree(node0.pid), ProcessTree(node1.pid)]
    checkpoints = checkpoint.CheckpointDir(runs_dir / "lost" / "checkpoints")
    wait_for(lambda: checkpoints.directory.is_dir() and checkpoints.existing(), 300, "the first checkpoint")
    for tree in trees:  # freeze both nodes, so that node 1 is lost mid-run however fast this machine is
        tree.refresh()
        for pid, _ in tree.known:
            os.kill(pid, signal.SIGSTOP)
    assert trees[1].kill()  # node 1, its launcher and its rank, gone at once
    node1.wait()
    lost_at = time.monotonic()
    for pid, _ in trees[0].known:
        os.kill(pid, signal.SIGCONT)
    out = node0.communicate(timeout=120)[0]
    assert node0.returncode != 0, out
    assert time.monotonic() - lost_at < 60  # ended by the lost peer, not by a hang
    reached = checkpoints.existing()[-1][0]
    assert 4 <= reached < STEPS

    outs = finish(two_nodes(config.__class__(**{**config.__dict__, "resume": True})))
    assert f"resuming step_{reached:07d}.pt" in outs[0]
    states_equal(final_state(runs_dir / "lost"), final_state(one_node_of_two))


def test_a_two_node_checkpoint_resumes_exactly_on_one_node_of_two_ranks(
    tmp_path, runs_dir, one_node_of_two, states_equal
):
    """The random streams belong to global ranks: the same number of ranks on another layout continues
    bitwise (a lost node's work moved onto one machine)."""
    config = config_for(tmp_path, "moved")
    finish(two_nodes(config.__class__(**{**config.__dict__, "stop_after": 4})))
    (out,) = finish([start(config.__class__(**{**config.__dict__, "resume": True}), "--gpus", "2")])
    assert "resuming step_0000004.pt" in out and "random streams restart" not in out
    assert losses(runs_dir / "moved") == losses(one_node_of_two)
    states_equal(final_state(runs_dir / "moved"), final_state(one_node_of_two))
