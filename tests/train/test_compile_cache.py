"""The compile cache: under the data dir, keyed by torch, the image's settings+lock and the source."""

import os

import pytest

from tandem.train import compile_cache


@pytest.fixture
def clean(monkeypatch):
    monkeypatch.delenv(compile_cache.INDUCTOR, raising=False)
    monkeypatch.delenv(compile_cache.TRITON, raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what the calls set stays in this test


def test_the_cache_lives_in_the_data_dir_and_is_cold_then_warm(tmp_path, clean):
    folder, warm = compile_cache.use_compile_cache(tmp_path / "data")
    assert folder.parent == tmp_path / "data" / "compile-cache" and not warm
    assert os.environ[compile_cache.INDUCTOR] == str(folder)
    assert os.environ[compile_cache.TRITON] == str(folder / "triton")
    (folder / "fxgraph").mkdir()
    assert compile_cache.use_compile_cache(tmp_path / "data") == (folder, True)


def test_another_lock_or_image_never_shares_a_cache(tmp_path, clean, monkeypatch):
    monkeypatch.setenv("TANDEM_ENV_DIGEST", "sha256:aaa")
    first = compile_cache.cache_key()
    monkeypatch.setenv("TANDEM_ENV_DIGEST", "sha256:bbb")
    assert compile_cache.cache_key() != first and len(first) == 16


def test_a_cache_the_user_chose_wins_and_torchs_default_does_not_count(tmp_path, clean, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setitem(os.environ, compile_cache.INDUCTOR, default_cache_dir())
    folder, _ = compile_cache.use_compile_cache(tmp_path / "data")
    assert folder.parent == tmp_path / "data" / "compile-cache"
    monkeypatch.setitem(os.environ, compile_cache.INDUCTOR, str(tmp_path / "mine"))
    assert compile_cache.use_compile_cache(tmp_path / "data")[0] == tmp_path / "mine"
