"""What lands in outputs/<run>/: copied from the runs Volume (read through the client) or a local runs dir."""

from __future__ import annotations

from modal.volume import FileEntry, FileEntryType

from modal_app.outputs import THE_FILE, DirFiles, VolumeFiles, copy_outputs, wanted

RUN_FILES = {
    "config.json": b"{}",
    "metrics.jsonl": b'{"step": 1}\n',
    "loss_curve.png": b"png",
    "events.out.tfevents.1764000000.host.12.0": b"events",
    "samples/step_0000010.png": b"grid",
    "checkpoints/step_0000010.pt": b"weights",
    "samples/.step_0000020.png.12.tmp": b"half",
}
COPIED = [
    "config.json",
    "events.out.tfevents.1764000000.host.12.0",
    "loss_curve.png",
    "metrics.jsonl",
    "samples/step_0000010.png",
]


class FakeVolume:
    """The two calls VolumeFiles makes, as modal.Volume answers them: paths from the Volume's root."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def listdir(self, path: str, recursive: bool = False):
        assert recursive
        if path in self.files:  # a file path: that one file
            return [FileEntry(path, FileEntryType.FILE, 0, len(self.files[path]))]
        entries = [
            FileEntry(p, FileEntryType.FILE, 0, len(d)) for p, d in self.files.items() if p.startswith(path + "/")
        ]
        return entries + [FileEntry(f"{path}/samples", FileEntryType.DIRECTORY, 0, 0)]

    def read_file(self, path: str):
        data = self.files[path]
        yield from (data[:2], data[2:])  # in chunks, as the client streams it


def copied(outputs, run):
    return sorted(p.relative_to(outputs / run).as_posix() for p in (outputs / run).rglob("*") if p.is_file())


def test_from_the_runs_volume(tmp_path):
    volume = FakeVolume({f"dit-1/{k}": v for k, v in RUN_FILES.items()} | {"dit-10/config.json": b"other"})
    written = copy_outputs(VolumeFiles(volume), "dit-1", tmp_path)
    assert copied(tmp_path, "dit-1") == COPIED == sorted(p.relative_to(tmp_path / "dit-1").as_posix() for p in written)
    assert (tmp_path / "dit-1" / "samples" / "step_0000010.png").read_bytes() == b"grid"


def test_from_a_local_runs_dir(tmp_path):
    for name, data in RUN_FILES.items():
        path = tmp_path / "runs" / "r" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    copy_outputs(DirFiles(tmp_path / "runs"), "r", tmp_path / "outputs")
    assert copied(tmp_path / "outputs", "r") == COPIED
    # copying again (a resumed run) refreshes the files in place
    (tmp_path / "runs" / "r" / "metrics.jsonl").write_bytes(b"more")
    copy_outputs(DirFiles(tmp_path / "runs"), "r", tmp_path / "outputs")
    assert (tmp_path / "outputs" / "r" / "metrics.jsonl").read_bytes() == b"more"


def test_only_what_people_look_at_is_copied():
    assert [name for name in RUN_FILES if wanted(name)] == [
        "config.json",
        "metrics.jsonl",
        "loss_curve.png",
        "events.out.tfevents.1764000000.host.12.0",
        "samples/step_0000010.png",
    ]


def test_a_missing_run_has_no_files(tmp_path):
    from modal.exception import NotFoundError

    class Missing:
        def listdir(self, path, recursive=False):
            raise NotFoundError(f"No such file or directory: {path}")

    assert VolumeFiles(Missing()).files("nothing") == []
    assert DirFiles(tmp_path).files("nothing") == []
    assert copy_outputs(DirFiles(tmp_path), "nothing", tmp_path / "outputs") == []
    assert not (tmp_path / "outputs").exists()


def test_a_file_path_lists_itself_a_folder_its_files(tmp_path):
    """What the launcher's check before sending reads: a checkpoint file, or a run's checkpoints folder."""
    volume = FakeVolume({f"r/{k}": v for k, v in RUN_FILES.items()})
    for name, data in RUN_FILES.items():
        path = tmp_path / "r" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for store in (VolumeFiles(volume), DirFiles(tmp_path)):
        assert store.files("r/checkpoints/step_0000010.pt") == [THE_FILE] == ["."]
        assert store.files("r/checkpoints") == ["step_0000010.pt"]
        assert store.files("r/checkpoints/step_0000020.pt") == []
