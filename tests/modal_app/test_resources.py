"""GPU type and count, timeout and reservation: checked here, spelt as Modal's client sends them."""

from __future__ import annotations

import pytest

from modal_app.resources import MAX_TIMEOUT, Placement, placement
from support import REPO
from tandem.env.settings import load_project
from tandem.errors import UsageError

SETTINGS = load_project(REPO).settings


@pytest.mark.parametrize(
    ("gpu", "count", "spec"),
    [("H100", 1, "H100"), ("h100", 8, "H100:8"), ("a100-80gb", 2, "A100-80GB:2"), ("A10G", 4, "A10G:4"),
     ("h100!", 1, "H100!"), ("B200+", 8, "B200+:8"), ("T4", 3, "T4:3")],
)  # fmt: skip
def test_documented_types_in_any_case(gpu, count, spec):
    assert placement(gpu, count, 60, SETTINGS).gpu_spec == spec


@pytest.mark.parametrize(
    ("gpu", "count", "timeout", "message"),
    [
        ("nonsense", 1, 60, "--gpu 'nonsense' is not a Modal GPU type; use one of T4, L4, A10, A10G, L40S, A100,"),
        ("H100 ", 1, 60, "is not a Modal GPU type"),
        ("A10G:8", 1, 60, "--gpu 'A10G:8': give the type alone and the count with --gpus, e.g. --gpu A10G --gpus 8"),
        ("A10", 5, 60, "--gpus 5: a container holds 1 to 4 A10 GPUs on Modal"),
        ("H200", 9, 60, "--gpus 9: a container holds 1 to 8 H200 GPUs on Modal"),
        ("T4", 0, 60, "--gpus 0: a container holds 1 to 8 T4 GPUs"),
        ("T4", 1, 0, "--timeout 0: Modal allows 1 to 86400 seconds per call"),
        ("T4", 1, MAX_TIMEOUT + 1, "--timeout 86401: Modal allows 1 to 86400 seconds per call"),
    ],
)
def test_bad_choices_are_one_line_naming_the_flag(gpu, count, timeout, message):
    with pytest.raises(UsageError) as caught:
        placement(gpu, count, timeout, SETTINGS)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_error_lists_every_valid_type():
    with pytest.raises(UsageError) as caught:
        placement("X", 1, 60, SETTINGS)
    assert str(caught.value).endswith(
        "T4, L4, A10, A10G, L40S, A100, A100-40GB, A100-80GB, RTX-PRO-6000, H100, H100!, H200, B200, B200+"
    )


def test_the_reservation_comes_from_the_settings():
    place = placement("L4", 2, 900, SETTINGS)
    assert place == Placement(gpu="L4", count=2, timeout=900, cpu=4.0, memory=16384)
    assert place.options() == {"gpu": "L4:2", "timeout": 900, "cpu": 4.0, "memory": 16384}
    assert Placement(**place.as_dict()) == place  # what a Function hands its continuation


def test_a_cluster_takes_whole_hosts_of_a_cluster_gpu():
    place = placement("h200", 8, 600, SETTINGS, nodes=4, rdma=False)
    assert (place.gpu_spec, place.nodes, place.rdma) == ("H200:8", 4, False)
    assert place.options()["gpu"] == "H200:8"  # per container
    assert place.describe() == "4 nodes x 8 x H200 (no RDMA), 4 CPU, 16384 MiB, timeout 600 s"
    assert Placement(**place.as_dict()) == place


def test_the_largest_cluster_modal_documents():
    assert placement("B200", 8, 600, SETTINGS, nodes=32).nodes == 32  # 256 GPUs


def test_the_app_defines_a_clustered_function_for_each_size():
    from modal_app import functions

    infos = {key: function.info() for key, function in functions.CLUSTER_FUNCTIONS.items()}
    assert sorted(infos) == [(n, r) for n in (2, 4, 8, 16, 32) for r in (False, True)]
    for (nodes, rdma), info in infos.items():
        assert (info.cluster_info.size, info.cluster_info.rdma) == (nodes, rdma)
        assert info.gpus == [("H100", 8)]  # whole hosts; a call's --gpu replaces the type
