"""The streaming benchmark's generator writes a cache store the real cache serves without
decoding (so the sweep measures streaming), in the NIH layout the loader reads."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import synth_nih  # noqa: E402
from training.data.cache import ImageCache  # noqa: E402
from training.preprocess import PreprocessConfig  # noqa: E402


def test_generated_store_serves_every_image_without_decoding(tmp_path):
    paths = synth_nih.generate(tmp_path / "nih", 300, cache=tmp_path / "cache", size=32,
                               cache_sizes=(100, 300))
    assert len(set(paths)) == 300 and all(Path(p).is_file() for p in paths)
    assert Path(paths[0]).parent.parent.name == "images_001"
    table = pd.read_csv(tmp_path / "nih" / "Data_Entry_2017.csv")
    assert list(table["Image Index"]) == [Path(p).name for p in paths]
    for n in (100, 300):
        cache = ImageCache(tmp_path / "cache" / f"n{n}")
        view, errors = cache.open(paths[:n], PreprocessConfig(size=32), workers=1)
        assert not errors and cache.last_stats == {"hits": n, "misses": 0, "errors": 0}
        rows = np.asarray(view[[0, n - 1]])
        assert rows.shape == (2, 32, 32, 3) and rows.std() > 0
    # the store holds only its N rows: a bigger N would find misses
    small = ImageCache(tmp_path / "cache" / "n100")
    small.open(paths[:101], PreprocessConfig(size=32), workers=1)
    assert small.last_stats["misses"] == 1
