"""compose.yaml for real (CPU override, stand-in base images): the image builds, `check` in it matches this
machine's fingerprint, and both trainers leave their outputs in the host's runs directory, owned by the
host user."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from support import REPO
from tandem.env.digest import DIGEST_VAR, env_digest
from tandem.env.settings import load_project
from tandem.train.checkpoint import load as load_checkpoint
from tandem.train.samples import grid_layout


def test_compose_build_makes_an_image_of_this_source(docker_client, compose_image):
    env = dict(item.split("=", 1) for item in docker_client.images.get(compose_image).attrs["Config"]["Env"])
    assert env[DIGEST_VAR] == env_digest(load_project(REPO))


def test_docker_fingerprint_matches_local(compare, local_fingerprint, docker_fingerprint):
    code, report = compare(local_fingerprint, docker_fingerprint)
    assert code == 0, report
    docker = json.loads(docker_fingerprint.read_text())
    assert docker["label"] == "docker"
    assert docker["environment"]["image_digest"] == docker["environment"]["settings_digest"]


@pytest.fixture(scope="module")
def dit_run(compose, compose_image, compose_runs):
    compose(
        "run", "--rm", "train-dit",
        "--run-name", "compose-dit", "--steps", "30", "--batch-size", "32", "--sample-every", "0",
        "--samples-per-class", "2", "--sample-steps", "4", "--checkpoint-every", "0",
    )  # fmt: skip
    return compose_runs / "compose-dit"


@pytest.fixture(scope="module")
def classifier_run(compose, compose_image, compose_runs):
    compose("run", "--rm", "train-classifier", "--run-name", "compose-classifier", "--epochs", "1", "--width", "16")
    return compose_runs / "compose-classifier"


@pytest.mark.parametrize("run", ["dit_run", "classifier_run"])
def test_training_leaves_checkpoint_and_metrics_in_the_runs_directory(request, run, compose_env):
    run_dir = request.getfixturevalue(run)
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert checkpoints, f"no checkpoint in {run_dir}"
    owner = int(compose_env["TANDEM_UID"])  # not the image's uid 1000: the host user's files
    assert {path.stat().st_uid for path in (run_dir, *checkpoints)} == {owner}
    state = load_checkpoint(checkpoints[-1])  # checks the stored content digest too
    assert state["model"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(loss == loss for loss in losses)  # present and not NaN
    assert json.loads((run_dir / "config.json").read_text())


def test_dit_leaves_a_sample_grid(dit_run):
    grids = sorted((dit_run / "samples").glob("*.png"))
    assert grids, f"no sample grid in {dit_run / 'samples'}"
    with Image.open(grids[-1]) as grid:
        grid.verify()
    with Image.open(grids[-1]) as grid:
        # digits: 10 classes of 8x8 images, labelled 0-9, with a caption above
        assert grid.size[0] == grid_layout(10, 2, 8, [str(d) for d in range(10)]).size[0] and grid.size[1] > 10 * 50


def test_the_two_node_file_trains_one_run_to_the_end(compose, compose_image, compose_runs):
    """compose.multinode.yaml: node-0 and node-1 on one Docker network, a 2-node gloo run on the CPU."""
    flags = "--run-name compose-2-nodes --steps 8 --batch-size 32 --sample-every 0 --checkpoint-every 4"
    files = ("compose.multinode.yaml",)
    try:
        compose("up", "--no-build", base=files, env={"TANDEM_FLAGS": flags})
        states = compose("ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}", base=files).stdout
    finally:
        logs = compose("logs", "--no-color", base=files, check=False).stdout
        compose("down", "--remove-orphans", base=files, check=False)
    assert sorted(states.split("\n")[:-1]) == ["node-0 exited 0", "node-1 exited 0"], logs
    assert "node 1 of 2: ranks 1-1 on cpu, training with node 0, which writes the run" in logs
    run = compose_runs / "compose-2-nodes"
    assert sorted(p.name for p in compose_runs.iterdir() if p.name.startswith("compose-2")) == ["compose-2-nodes"]
    record = json.loads((run / "config.json").read_text())
    assert (record["world_size"], record["nodes"]) == (2, 2)
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert (final["status"], final["step"], final["ranks_identical"]) == ("completed", 8, True)
