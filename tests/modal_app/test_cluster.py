"""A `--nodes 2` call as each container of a Modal cluster runs it: the cluster's context faked where Modal's
container runtime sets it (rank and peer addresses), the rest real: the Function body, the supervisor,
torchrun with a rendezvous at node 0 and gloo ranks on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from modal_app import supervisor
from modal_app.resources import Placement
from support import REPO, free_port, job_pids, wait_for
from tandem.train.checkpoint import CheckpointDir
from tandem.train.config import DiTTrainConfig
from tandem.train.launch import Launch

CONTEXT = "modal._cluster.current_cluster_context"


def cluster_context(rank: int, ips: list[str]):
    from modal._cluster import ClusterContext

    return ClusterContext(rank=rank, cluster_id="cu-test", container_ips=ips, container_ipv4_ips=[], fabric_ids=[])


def test_each_container_starts_its_node_of_torchrun_from_the_cluster_info(monkeypatch):
    place = Placement("H100", 8, 3600, 4.0, 16384, nodes=2)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setattr(CONTEXT, cluster_context(1, ["fdaa:0:1::2", "fdaa:0:1::3"]))
    node = supervisor.node_of_cluster(place)
    assert node == Launch(gpus=8, nodes=2, node_rank=1, master_addr="fdaa:0:1::2", master_port=29500)
    command = supervisor.trainer_command("dit", DiTTrainConfig(run_name="r"), node, given={"steps": "flag"})
    assert command[1:15] == [
        "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1", "--master-addr", "fdaa:0:1::2",
        "--master-port", "29500", "--nproc-per-node", "8", "-m", "tandem",
    ]  # fmt: skip


def test_a_cluster_of_another_size_than_asked_is_an_error(monkeypatch):
    monkeypatch.setattr(CONTEXT, cluster_context(0, ["fdaa::2", "fdaa::3", "fdaa::4"]))
    with pytest.raises(RuntimeError, match="the cluster has 3 containers, the call asked for 2"):
        supervisor.node_of_cluster(Placement("H100", 8, 3600, 4.0, 16384, nodes=2))


CONTAINER = textwrap.dedent(
    """
    import json, sys, warnings
    import modal._cluster
    from modal._cluster import ClusterContext
    rank, config, placement = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    modal._cluster.current_cluster_context = ClusterContext(rank, "cu-test", ["127.0.0.1", "127.0.0.1"], [], [])
    warnings.filterwarnings("ignore", message=".*executing locally")
    from modal_app import functions
    try:
        result = functions.CLUSTER_FUNCTIONS[2, True].local("dit", config, placement)
    except Exception as exc:
        result = {"raised": type(exc).__name__, "message": str(exc)}
    print("RESULT " + json.dumps(result), flush=True)
    """
)
SMALL = {"depth": 2, "width": 32, "heads": 2, "patch_size": 4, "batch_size": 16, "warmup_steps": 2, "log_every": 1,
         "checkpoint_every": 4, "sample_every": 0, "samples_per_class": 1, "sample_steps": 2, "solver": "euler",
         "device": "cpu", "deterministic": True, "cpu_threads": 1, "loggers": "none"}  # fmt: skip


def start_cluster(tmp_path, name: str, steps: int, port: int) -> list[subprocess.Popen]:
    config = {**DiTTrainConfig().__dict__, **SMALL, "steps": steps, "run_name": name,
              "runs_dir": str(tmp_path / "runs"), "data_dir": str(tmp_path / "data")}  # fmt: skip
    place = Placement("H100", 1, 3600, 4.0, 16384, nodes=2).as_dict()  # one rank per node: two CPU cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(port), "PYTHONPATH": str(REPO)}
    return [
        subprocess.Popen(
            [sys.executable, "-c", CONTAINER, str(rank), json.dumps(config), json.dumps(place)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )  # fmt: skip
        for rank in (0, 1)
    ]


def result_of(output: str) -> dict:
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.training
def test_a_two_node_cluster_trains_one_run_and_node_0_answers(tmp_path):
    containers = start_cluster(tmp_path, "cluster", 8, free_port())
    outs = [c.communicate(timeout=300)[0] for c in containers]
    node0, node1 = map(result_of, outs)
    assert (node0["status"], node0["step"]) == ("completed", 8), outs[0]
    assert node1 == {"kind": "dit", "node_rank": 1, "status": "node ended", "exit_code": 0}, outs[1]
    record = json.loads((tmp_path / "runs" / "cluster" / "config.json").read_text())
    assert (record["world_size"], record["nodes"]) == (2, 2)
    assert "node 1 of 2: ranks 1-1" in outs[1]


@pytest.mark.training
def test_a_cancelled_cluster_leaves_no_process_on_any_container(tmp_path):
    containers = start_cluster(tmp_path, "cancelled", 400, free_port())
    checkpoints = CheckpointDir(tmp_path / "runs" / "cancelled" / "checkpoints")
    wait_for(lambda: checkpoints.directory.is_dir() and checkpoints.existing(), 300, "the first checkpoint")
    for container in containers:  # Modal's cancellation and preemption: SIGINT to every container
        container.send_signal(signal.SIGINT)
    sent = time.monotonic()
    outs = [c.communicate(timeout=60)[0] for c in containers]
    assert time.monotonic() - sent < 30  # before Modal's SIGKILL
    node0 = result_of(outs[0])
    assert node0["raised"] == "RunInterrupted" and "stopped at step" in node0["message"], outs[0]
    assert job_pids(str(tmp_path)) == []  # no launcher, no rank, on either node
