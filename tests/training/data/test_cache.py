"""Tests of training/data/cache.py: hits, invalidation, errors, crash safety."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import images as H
from training import preprocess as pp
from training.data import cache as cache_mod
from training.data.cache import ImageCache, default_cache_dir
from training.data.cached_images import CachedImages
from training.errors import DataError, ImageDecodeError
from training.preprocess import PreprocessConfig, load_image

CFG = PreprocessConfig(size=24)
SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture
def files(tmp_path) -> list[str]:
    """Five distinct small images of several formats."""
    d = tmp_path / "img"
    return [str(p) for p in [
        H.write_image(d / "a.png", "L", seed=1), H.write_image(d / "b.png", "RGBA", seed=2),
        H.write_image(d / "c.jpg", "RGB", seed=3), H.write_image(d / "d.png", "I;16", seed=4),
        H.write_dicom(d / "e.dcm", seed=5),
    ]]


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Names decoded by the preprocessing (to prove hits never decode)."""
    calls: list[str] = []
    real = pp.decode_image

    def counting(source, name=None):
        calls.append(name)
        return real(source, name)

    monkeypatch.setattr(pp, "decode_image", counting)
    return calls


def _expected(paths: list[str], cfg: PreprocessConfig) -> np.ndarray:
    return np.stack([load_image(p, cfg) for p in paths])


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("cfg", [CFG, PreprocessConfig(size=20, channels=1, resize="crop")])
def test_load_matches_load_image_and_second_load_decodes_nothing(tmp_path, files, decodes,
                                                                 cfg, workers):
    cache = ImageCache(tmp_path / "cache")
    first, errors = cache.load(files, cfg, workers=workers)
    assert errors == [] and first.dtype == np.uint8
    assert first.shape == (5, cfg.size, cfg.size, cfg.channels)
    assert sorted(decodes) == sorted(files) and cache.last_stats["misses"] == 5
    decodes.clear()
    second, _ = ImageCache(tmp_path / "cache").load(files[::-1], cfg, workers=workers)
    assert decodes == []
    np.testing.assert_array_equal(second, first[::-1])
    np.testing.assert_array_equal(first, _expected(files, cfg))


def test_channels_share_the_store(tmp_path, files, decodes):
    cache = ImageCache(tmp_path)
    one, _ = cache.load(files, dataclasses.replace(CFG, channels=1))
    decodes.clear()
    three, _ = cache.load(files, CFG)
    assert decodes == [] and three.shape[-1] == 3
    np.testing.assert_array_equal(three, np.repeat(one, 3, axis=-1))


def test_changed_file_is_preprocessed_again(tmp_path, files, decodes):
    cache = ImageCache(tmp_path / "cache")
    before, _ = cache.load(files, CFG)
    H.write_image(files[0], "L", seed=99)  # same path, new content
    decodes.clear()
    after, _ = cache.load(files, CFG)
    assert decodes == [files[0]]
    assert not np.array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[0], load_image(files[0], CFG))
    np.testing.assert_array_equal(after[1:], before[1:])


@pytest.mark.parametrize("change", [{"size": 26}, {"clip_percentile": 2.0}, {"resize": "crop"},
                                    {"clahe": True}])
def test_changed_config_is_preprocessed_again(tmp_path, files, decodes, change):
    cache = ImageCache(tmp_path)
    cache.load(files, CFG)
    decodes.clear()
    cfg = dataclasses.replace(CFG, **change)
    out, _ = cache.load(files, cfg)
    assert len(decodes) == len(files)
    np.testing.assert_array_equal(out, _expected(files, cfg))


def test_same_content_under_two_paths_is_stored_once(tmp_path, files):
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(files[0]).read_bytes())
    cache = ImageCache(tmp_path / "cache")
    out, _ = cache.load([files[0], str(copy)], CFG)
    np.testing.assert_array_equal(out[0], out[1])
    out, _ = cache.load([str(copy)], CFG)
    assert cache.last_stats == {"hits": 1, "misses": 0, "errors": 0}


def _bad_files(tmp_path: Path) -> dict[str, str]:
    return {
        "missing": str(tmp_path / "nope.png"),
        "truncated": str(H.write_truncated(tmp_path / "t.jpg")),
        "not-image": str(H.write_not_image(tmp_path / "n.png")),
        "empty": str((tmp_path / "e.png", (tmp_path / "e.png").write_bytes(b""))[0]),
    }


def test_skip_records_errors_and_zeroes_their_rows(tmp_path, files):
    bad = _bad_files(tmp_path)
    paths = [files[0], bad["missing"], files[1], bad["truncated"], bad["not-image"],
             bad["empty"]]
    out, errors = ImageCache(tmp_path / "cache").load(paths, CFG, on_error="skip")
    assert [e["index"] for e in errors] == [1, 3, 4, 5]
    assert [e["path"] for e in errors] == [paths[i] for i in (1, 3, 4, 5)]
    reasons = [e["reason"] for e in errors]
    assert "not found" in reasons[0] and "truncated" in reasons[1]
    assert "not a JPEG" in reasons[2] and "empty" in reasons[3]
    assert not out[[1, 3, 4, 5]].any()
    np.testing.assert_array_equal(out[[0, 2]], _expected([files[0], files[1]], CFG))


@pytest.mark.parametrize("kind, error", [("missing", DataError), ("truncated", ImageDecodeError),
                                         ("not-image", ImageDecodeError),
                                         ("empty", ImageDecodeError)])
def test_raise_names_the_file_and_suggests_skip(tmp_path, files, kind, error):
    bad = _bad_files(tmp_path)[kind]
    with pytest.raises(error) as err:
        ImageCache(tmp_path / "cache").load([files[0], bad, files[1]], CFG)
    assert err.value.path == bad and bad in str(err.value)
    assert "--on-error skip" in str(err.value)


def test_work_before_an_error_is_kept(tmp_path, files, decodes):
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageDecodeError):
        cache.load(files[:2] + [str(H.write_not_image(tmp_path / "x.png"))], CFG, workers=1)
    decodes.clear()
    cache.load(files[:2], CFG)
    assert decodes == [] and cache.last_stats["hits"] == 2


@pytest.mark.parametrize("fail_at", [".npy", ".json"])
def test_interrupted_write_leaves_a_usable_cache(tmp_path, files, monkeypatch, fail_at):
    """Kill the build while it writes the 2nd shard's data or manifest: shard 1 survives."""
    monkeypatch.setattr(cache_mod, "SHARD_ROWS", 2)
    real, shards_started, dead = cache_mod._atomic_write, [], []

    def dying(path: Path, write) -> None:
        if dead:  # a killed process writes nothing more (not even in `finally`)
            raise KeyboardInterrupt
        shards_started.extend([path] if path.suffix == ".npy" else [])
        if len(shards_started) == 2 and path.suffix == fail_at:
            path.with_name(f".tmp-x-{path.name}").write_bytes(b"\x93NUMPY partial")
            dead.append(path)
            raise KeyboardInterrupt("killed mid-write")
        real(path, write)

    monkeypatch.setattr(cache_mod, "_atomic_write", dying)
    with pytest.raises(KeyboardInterrupt):
        ImageCache(tmp_path / "cache").load(files, CFG, workers=1)
    monkeypatch.setattr(cache_mod, "_atomic_write", real)
    resumed = ImageCache(tmp_path / "cache")
    out, errors = resumed.load(files, CFG)
    assert errors == [] and resumed.last_stats == {"hits": 2, "misses": 3, "errors": 0}
    np.testing.assert_array_equal(out, _expected(files, CFG))
    again = ImageCache(tmp_path / "cache")
    again.load(files, CFG)
    assert again.last_stats == {"hits": 5, "misses": 0, "errors": 0}


def test_damaged_shard_is_ignored_and_rebuilt(tmp_path, files, caplog):
    cache = ImageCache(tmp_path)
    cache.load(files, CFG)
    shards = list(cache.store_dir(CFG).glob("shard-*.npy"))
    assert len(shards) == 1
    shards[0].write_bytes(shards[0].read_bytes()[:200])  # disk trouble
    with caplog.at_level(logging.WARNING, logger=cache_mod.__name__):
        out, _ = cache.load(files, CFG)
    assert "damaged cache shard" in caplog.text and cache.last_stats["misses"] == 5
    np.testing.assert_array_equal(out, _expected(files, CFG))


def test_empty_path_list(tmp_path):
    out, errors = ImageCache(tmp_path).load([], CFG)
    assert out.shape == (0, 24, 24, 3) and errors == []


def test_bad_on_error_value(tmp_path, files):
    with pytest.raises(ValueError, match="on_error"):
        ImageCache(tmp_path).load(files, CFG, on_error="ignore")


def test_progress_bar_does_not_change_the_result(tmp_path, files):
    out, _ = ImageCache(tmp_path).load(files, CFG, progress=True)
    np.testing.assert_array_equal(out, _expected(files, CFG))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRLAB_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CXRLAB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "cxrlab"


def test_real_data_round_trip(tmp_path):
    folders = [SHARED / "ieee8023-covid-chestxray" / "images", SHARED / "kermany-pneumonia" / "train"]
    paths = [str(p) for f in folders if f.is_dir() for p in sorted(f.rglob("*.*"))[:6]]
    if not paths:
        pytest.skip("real data not available under ../shared/data")
    cache = ImageCache(tmp_path)
    first, errors = cache.load(paths, PreprocessConfig(size=64))
    second, _ = cache.load(paths, PreprocessConfig(size=64))
    assert errors == [] and cache.last_stats["hits"] == len(paths)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first[0], load_image(paths[0], PreprocessConfig(size=64)))


# ------------------------------------------------------------------ the lazy view and processes
def test_open_is_a_lazy_view_equal_to_the_eager_array(tmp_path, files):
    bad = str(H.write_not_image(tmp_path / "x.png"))
    paths = [files[2], bad, files[0], files[2]]
    cache = ImageCache(tmp_path / "cache")
    view, errors = cache.open(paths, CFG, on_error="skip")
    assert isinstance(view, CachedImages) and view.shape == (4, 24, 24, 3)
    assert [e["index"] for e in errors] == [1]
    eager, _ = ImageCache(tmp_path / "cache").load(paths, CFG, on_error="skip")
    np.testing.assert_array_equal(view[:], eager)
    np.testing.assert_array_equal(view[[3, 0, 1]], eager[[3, 0, 1]])
    assert not view[1].any()


def test_chunked_opens_reuse_the_index_and_see_new_shards(tmp_path, files, decodes):
    cache = ImageCache(tmp_path / "cache")
    cache.open(files[:2], CFG)
    ImageCache(tmp_path / "cache").open(files[2:], CFG)  # another writer adds a shard
    decodes.clear()
    view, _ = cache.open(files, CFG)
    assert decodes == [] and cache.last_stats["hits"] == 5
    np.testing.assert_array_equal(view[:], _expected(files, CFG))


def test_process_pool_gives_the_same_images_and_errors(tmp_path, files, monkeypatch):
    monkeypatch.setattr(cache_mod, "PROCESS_MIN", 0)  # processes even for five files
    bad = _bad_files(tmp_path)
    paths = files + [bad["truncated"], bad["missing"]]
    view, errors = ImageCache(tmp_path / "cache").open(paths, CFG, on_error="skip", workers=2)
    assert [e["index"] for e in errors] == [5, 6]
    assert "truncated" in errors[0]["reason"] and "not found" in errors[1]["reason"]
    np.testing.assert_array_equal(view[:5], _expected(files, CFG))
    with pytest.raises(ImageDecodeError) as err:
        ImageCache(tmp_path / "other").open([files[0], bad["truncated"]], CFG, workers=2)
    assert err.value.path == bad["truncated"] and "--on-error skip" in str(err.value)
