"""The launch flags of `tandem train` and the torchrun command they make (no process started here)."""

import sys

import pytest

from tandem.cli import main
from tandem.errors import UsageError
from tandem.train.launch import Launch, launch_of, split_address


def test_one_process_runs_the_command_itself():
    assert Launch().torchrun(["-m", "tandem", "train", "dit"]) == [sys.executable, "-m", "tandem", "train", "dit"]


def test_several_gpus_on_one_machine_are_a_standalone_torchrun():
    assert launch_of(4, 1, 0, "").torchrun(["-m", "tandem", "train", "dit", "--steps", "5"]) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
        "-m", "tandem", "train", "dit", "--steps", "5",
    ]  # fmt: skip


def test_several_nodes_rendezvous_at_node_0_with_fixed_node_ranks():
    launch = launch_of(8, 2, 1, "10.1.2.3:29400")
    assert launch.world_size == 16
    assert launch.torchrun(["-m", "tandem"]) == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1",
        "--master-addr", "10.1.2.3", "--master-port", "29400", "--nproc-per-node", "8", "-m", "tandem",
    ]  # fmt: skip
    assert launch.flags() == ["--gpus", "8", "--nodes", "2", "--node-rank", "1", "--master-addr", "10.1.2.3:29400"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("node0", ("node0", 29500)),
        ("node0:1234", ("node0", 1234)),
        ("fdaa::3", ("fdaa::3", 29500)),  # Modal's cluster addresses are IPv6
        ("[fdaa::3]:1234", ("fdaa::3", 1234)),
        ("[fdaa::3]", ("fdaa::3", 29500)),
    ],
)
def test_master_addresses(text, expected):
    assert split_address(text) == expected


def test_an_ipv6_master_is_written_back_in_brackets():
    assert launch_of(1, 2, 0, "fdaa::3").flags()[-1] == "[fdaa::3]:29500"


@pytest.mark.parametrize(
    "gpus, nodes, node_rank, master, words",
    [
        (0, 1, 0, "", "--gpus 0: give the ranks to start on this node, 1 to 64"),
        (1, 0, 0, "", "--nodes 0: give the number of machines, 1 to 1024"),
        (1, 2, 2, "h", "--node-rank 2: with --nodes 2 it is 0 to 1, a different one per node"),
        (1, 2, 0, "", "--nodes 2 needs --master-addr HOST[:PORT]"),
        (1, 1, 1, "", "--node-rank and --master-addr belong to a run over several machines; add --nodes N"),
        (1, 2, 0, "h:99999", "--master-addr 'h:99999': give node 0's HOST or HOST:PORT"),
        (1, 2, 0, "h:x", "--master-addr 'h:x'"),
        (1, 2, 0, "[::1]x", "--master-addr '[::1]x'"),
    ],
)
def test_bad_launch_flags_are_one_line(gpus, nodes, node_rank, master, words):
    with pytest.raises(UsageError) as caught:
        launch_of(gpus, nodes, node_rank, master)
    assert str(caught.value).startswith(words)


def test_the_cli_refuses_a_bad_launch_before_anything_starts(tmp_path, capsys):
    code = main(["train", "dit", "--runs-dir", str(tmp_path), "--nodes", "2", "--node-rank", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--nodes 2 needs --master-addr" in err
    assert list(tmp_path.iterdir()) == []


def test_torchrun_started_ranks_refuse_a_second_launch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code = main(["train", "dit", "--runs-dir", str(tmp_path), "--gpus", "2"])
    assert code == 2
    assert "torchrun started this process already; drop --gpus / --nodes" in capsys.readouterr().err
