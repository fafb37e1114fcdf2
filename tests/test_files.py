"""tandem.files: one atomic write for every file, failing in one line that names the path and the reason."""

import errno
import os

import pytest

from support import read_only_mount
from tandem import files
from tandem.errors import UsageError
from tandem.files import WriteError, atomic_write, check_writable, write_text_atomic


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["a.json"]


def test_read_only_file_system_is_one_line_naming_path_and_reason(tmp_path):
    with read_only_mount(tmp_path / "ro", {"kept.json": b"kept\n"}) as ro:
        for target in (ro / "fp.json", ro / "kept.json"):
            with pytest.raises(WriteError) as err:
                write_text_atomic(target, "{}\n")
            assert str(err.value) == f"cannot write {target}: {ro} is on a read-only file system"
            assert err.value.errno == errno.EROFS
        assert os.listdir(ro) == ["kept.json"] and (ro / "kept.json").read_text() == "kept\n"


def test_read_only_at_the_last_moment_hides_nothing_behind_the_clean_up(tmp_path, monkeypatch):
    """The check before the write passed, then the file system refused (remounted meanwhile): the error
    raised is the write's, not the clean-up's."""

    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "fp.json"))

    monkeypatch.setattr(files.os, "replace", refused)
    monkeypatch.setattr(files.Path, "unlink", refused)  # the clean-up fails the same way
    with pytest.raises(WriteError) as err:
        write_text_atomic(tmp_path / "fp.json", "{}\n")
    assert str(err.value) == f"cannot write {tmp_path / 'fp.json'}: {tmp_path} is on a read-only file system"
    assert err.value.errno == errno.EROFS and err.value.__suppress_context__  # no chain of clean-up errors


def test_a_directory_is_refused_and_no_temporary_is_made_above_it(tmp_path):
    before = sorted(os.listdir(tmp_path.parent))
    with pytest.raises(WriteError) as err:
        write_text_atomic(tmp_path, "{}\n")
    assert str(err.value) == f"cannot write {tmp_path}: it is a directory; name a file inside it"
    assert err.value.errno == errno.EISDIR
    assert sorted(os.listdir(tmp_path.parent)) == before
    with pytest.raises(WriteError, match="it is a directory"):
        write_text_atomic("/", "{}\n")


def test_a_missing_folder_is_named_and_never_made(tmp_path):
    target = tmp_path / "no" / "such" / "x.png"
    with pytest.raises(WriteError) as err:
        atomic_write(target, lambda f: f.write(b"png"))
    assert str(err.value) == f"cannot write {target}: there is no folder {target.parent}; create it first"
    assert not (tmp_path / "no").exists()


def test_parents_are_made_when_asked(tmp_path):
    target = tmp_path / "fingerprints" / "local.json"
    write_text_atomic(target, "{}\n", parents=True)
    assert target.read_text() == "{}\n"


def test_a_file_in_the_way_of_a_folder_is_named(tmp_path):
    (tmp_path / "runs").write_text("a file")
    for parents in (False, True):
        with pytest.raises(WriteError) as err:
            write_text_atomic(tmp_path / "runs" / "fingerprints" / "x.json", "{}\n", parents=parents)
        assert str(err.value).endswith(f": {tmp_path / 'runs'} is not a folder")


def test_a_device_is_never_replaced_by_a_file():
    with pytest.raises(WriteError, match="cannot write /dev/null: it is not a regular file"):
        write_text_atomic("/dev/null", "x")
    assert not os.path.isfile("/dev/null")


def test_no_space_names_the_device_and_removes_the_temporary(tmp_path):
    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as err:
        atomic_write(tmp_path / "c.pt", full)
    assert str(err.value) == f"cannot write {tmp_path / 'c.pt'}: no space left on the device of {tmp_path}"
    assert err.value.strerror == "No space left on device"  # as the OSError said: callers may quote it
    assert os.listdir(tmp_path) == []


def test_a_write_error_is_a_usage_error_and_an_os_error(tmp_path):
    with pytest.raises(UsageError):
        write_text_atomic(tmp_path / "missing" / "x", "")
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "missing" / "x", "")


def test_a_new_file_never_replaces_one(tmp_path):
    target = tmp_path / "grid.png"
    atomic_write(target, lambda f: f.write(b"first"), replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda f: f.write(b"second"), replace=False)
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["grid.png"]


def test_check_writable_refuses_before_any_work(tmp_path):
    check_writable(tmp_path / "x.json")
    check_writable(tmp_path / "a" / "b" / "x.json", parents=True)
    with pytest.raises(WriteError, match="there is no folder"):
        check_writable(tmp_path / "a" / "x.json")
    with read_only_mount(tmp_path / "ro") as ro:
        with pytest.raises(WriteError, match="is on a read-only file system"):
            check_writable(ro / "sub" / "x.json", parents=True)
    assert not (tmp_path / "a").exists()
