"""The Modal app: the shared image, the data and runs Volumes, and one Function per tandem command.

Each Function calls what the local CLI calls; options come from resources.py. Modal imports this module on
both sides: here, and in the container, where the whole package is mounted at /root/modal_app (the
Functions live in a package, so Modal mounts the package) and the project sits at the image's workdir.
"""

from __future__ import annotations

from pathlib import Path

import modal

from tandem.env.modal_image import build_modal_image, pin_builder_version
from tandem.env.settings import default_root, load_project

from . import resources

APP_NAME = "tandem"
DATA_VOLUME = "tandem-data"
RUNS_VOLUME = "tandem-runs"


def project_root() -> Path:
    # Here this file sits in <project>/modal_app/; in the container the project lives at the settings'
    # workdir, which the image names in TANDEM_PROJECT_DIR.
    beside = Path(__file__).resolve().parents[1]
    return beside if (beside / "pyproject.toml").is_file() else default_root()


project = load_project(project_root())
settings = project.settings
pin_builder_version(project)  # Modal builds with the settings' builder version, not the workspace's
image = build_modal_image(project)
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
VOLUMES = {settings.data_dir: data_volume, settings.runs_dir: runs_volume}

app = modal.App(APP_NAME, image=image)


def volume_commit():
    """What makes the Volumes' new files durable: nothing to do when a Function body runs here."""
    return None if modal.is_local() else commit_volumes


def commit_volumes() -> None:
    """Make what this container wrote visible to other containers and to `modal volume get`."""
    if not modal.is_local():
        runs_volume.commit()
        data_volume.commit()


@app.function(volumes=VOLUMES, **resources.function_options(settings, resources.TRAIN_TIMEOUT, train=True))
def train_classifier(config: dict, placement: dict, given: dict[str, str] | None = None) -> dict:
    from .supervisor import train_here

    return train_here("classifier", config, resources.Placement(**placement), train_classifier, volume_commit(), given)


@app.function(volumes=VOLUMES, **resources.function_options(settings, resources.TRAIN_TIMEOUT, train=True))
def train_dit(config: dict, placement: dict, given: dict[str, str] | None = None) -> dict:
    from .supervisor import train_here

    return train_here("dit", config, resources.Placement(**placement), train_dit, volume_commit(), given)


@app.function(volumes=VOLUMES, **resources.function_options(settings, resources.SHORT_TIMEOUT, train=False))
def sample(options: dict) -> dict:
    """`tandem sample` with these parsed options (its flags' dests); the grid lands in the run's samples/."""
    from argparse import Namespace

    from tandem.errors import UsageError
    from tandem.train.commands import sample_command

    try:
        sample_command(Namespace(**options))
    except UsageError as exc:  # retrying cannot help
        return {"status": "error", "message": str(exc)}
    finally:
        commit_volumes()
    return {"status": "completed"}


@app.function(volumes=VOLUMES, **resources.function_options(settings, resources.SHORT_TIMEOUT, train=False))
def check(label: str, runs_dir: str) -> dict:
    """This environment's fingerprint, as `tandem check` writes it, saved as <runs>/fingerprints/<label>.json."""
    from tandem.check.fingerprint import collect_fingerprint, write_fingerprint

    fingerprint = collect_fingerprint(label=label)
    path = write_fingerprint(fingerprint, Path(runs_dir) / "fingerprints" / f"{label}.json", parents=True)
    print(f"wrote {path}")
    commit_volumes()
    return fingerprint


def train_on_nodes(kind: str, config: dict, placement: dict, given: list[str] | None = None) -> dict:
    """One container of a Modal cluster: this node's ranks of a `--nodes N` run (torchrun, node 0's
    container the rendezvous); node 0's result is the call's."""
    from .supervisor import node_of_cluster, train_here

    place = resources.Placement(**placement)
    function = CLUSTER_FUNCTIONS[place.nodes, place.rdma]
    return train_here(kind, config, place, function, volume_commit(), given, node_of_cluster(place), lead=(kind,))


TRAIN_FUNCTIONS = {"classifier": train_classifier, "dit": train_dit}
# A cluster's size is part of its Function: one per size the app offers, with and without RDMA. They all
# run train_on_nodes, which stays a plain function under its own name (Modal finds it there).
CLUSTER_FUNCTIONS = {
    (nodes, rdma): app.function(
        name=resources.cluster_function_name(nodes, rdma),
        volumes=VOLUMES,
        **resources.function_options(settings, resources.TRAIN_TIMEOUT, train=True, nodes=nodes),
    )(modal.clustered(size=nodes, rdma=rdma)(train_on_nodes))
    for nodes in resources.CLUSTER_SIZES
    for rdma in (True, False)
}


def training_function(kind: str, place: resources.Placement) -> tuple[modal.Function, tuple]:
    """The Function a training call goes to, and the arguments it takes before (config, placement, given)."""
    if place.nodes > 1:
        return CLUSTER_FUNCTIONS[place.nodes, place.rdma], (kind,)
    return TRAIN_FUNCTIONS[kind], ()
