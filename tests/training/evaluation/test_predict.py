import logging
import os

import numpy as np
import pandas as pd
import pytest

from tests.helpers.images import write_dicom, write_not_image, write_truncated
from training.errors import DataError
from training.evaluation.predict import find_images, predict_files, write_predictions


@pytest.fixture(scope="module")
def folder(world, tmp_path_factory):
    """Images in nested folders, a symlinked folder, an extensionless DICOM, junk files."""
    root = tmp_path_factory.mktemp("pred")
    src = sorted((world["root"] / "kermany").rglob("*.png"))[:20]
    for i, f in enumerate(src):
        (root / "a" / f"sub{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / "a" / f"sub{i % 3}" / f.name).write_bytes(f.read_bytes())
    write_dicom(root / "a" / "scan_without_extension", h=160, w=160)  # the gate refuses < 128 px
    write_truncated(root / "a" / "broken.png")
    (root / "a" / "notes.txt").write_text("not an image")
    linked = tmp_path_factory.mktemp("linked")
    (linked / "x.png").write_bytes(src[0].read_bytes())
    os.symlink(linked, root / "a" / "link")
    return root


def test_find_images_recursive_symlinks_dicom_magic(folder):
    found = {p.name for p in find_images([folder])}
    assert "scan_without_extension" in found and "broken.png" in found
    assert "x.png" in found  # through the symlink
    assert "notes.txt" not in found
    assert len(found) == 23


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        find_images([tmp_path / "nope"])


def test_batch_size_and_order_do_not_change_predictions(world, folder):
    files = [str(p) for p in find_images([folder]) if p.name != "broken.png"]
    a = predict_files([world["single"]], files, batch_size=32).set_index("path")
    shuffled = list(np.random.default_rng(0).permutation(files))
    b = predict_files([world["single"]], shuffled, batch_size=1).set_index("path").loc[a.index]
    c = predict_files([world["single"]], shuffled, batch_size=7).set_index("path").loc[a.index]
    cols = ["prob_Normal", "prob_Pneumonia"]
    assert a[cols].notna().all().all()
    np.testing.assert_allclose(a[cols], b[cols], atol=1e-6)
    np.testing.assert_allclose(a[cols], c[cols], atol=1e-6)
    assert (a["pred"] == b["pred"]).all()


def test_unreadable_file_reported_in_error_column_and_log(world, folder, caplog):
    bad = folder / "a" / "broken.png"
    junk = write_not_image(folder / "junk.jpg")
    with caplog.at_level(logging.ERROR):
        df = predict_files([world["single"]], [folder / "a" / "sub0", bad, junk])
    rows = df.set_index("path")
    assert rows.loc[str(bad), "error"] and rows.loc[str(junk), "error"]
    assert np.isnan(rows.loc[str(bad), "prob_Normal"]) and pd.isna(rows.loc[str(bad), "pred"])
    assert caplog.text.count("could not be used") == 2  # said, without the file names:
    assert str(bad) not in caplog.text and "broken" not in caplog.text and "junk" not in caplog.text
    good = rows.drop([str(bad), str(junk)])
    assert good["error"].isna().all() and good["prob_Normal"].notna().all()


def test_columns_single_multi_and_several_models(world, folder):
    one = predict_files([world["single"]], [folder / "a" / "sub1"])
    assert list(one.columns) == ["path", "gate", "gate_reasons", "prob_Normal", "prob_Pneumonia",
                                 "raw_prob_Normal", "raw_prob_Pneumonia", "pred", "decision_note",
                                 "ood_score", "error"]
    assert one["decision_note"].isna().all()  # every output decided: nothing to explain
    np.testing.assert_allclose(one[["prob_Normal", "prob_Pneumonia"]].sum(axis=1), 1, atol=1e-5)
    assert set(one["pred"]) <= {"Normal", "Pneumonia"}
    two = predict_files([world["single"], world["multi"]], [folder / "a" / "sub1"])
    assert "single:prob_Pneumonia" in two and "multi:prob_No Finding" in two and "multi:pred" in two
    for _, r in two.iterrows():  # multilabel: outputs over their card thresholds (0.5)
        want = [o for o in ("No Finding", "Pneumonia") if r[f"multi:prob_{o}"] >= 0.5]
        assert r["multi:pred"] == ";".join(want)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_write_predictions(world, folder, tmp_path, suffix):
    df = predict_files([world["single"]], [folder / "a" / "sub2"])
    path = write_predictions(df, tmp_path / "out" / f"p{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_json(path)
    assert list(back["path"]) == list(df["path"])
    np.testing.assert_allclose(back["prob_Pneumonia"], df["prob_Pneumonia"], rtol=1e-6)


def test_predict_writes_the_gate_verdict_and_withholds_refused_probabilities(world, tmp_path):
    from tests.helpers.images import png_bytes

    ok = sorted((world["root"] / "kermany").rglob("*.png"))[0]
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(png_bytes(np.full((40, 40), 90, np.uint8)))
    df = predict_files([world["single"]], [ok, tiny]).set_index("path")
    assert df.loc[str(ok), "gate"] in ("accept", "warn")
    assert df.loc[str(tiny), "gate"] == "refuse"
    assert "too_small" in df.loc[str(tiny), "gate_reasons"]
    assert df.loc[str(tiny), ["prob_Normal", "raw_prob_Normal"]].isna().all()
    assert pd.isna(df.loc[str(tiny), "pred"])
    assert np.isfinite(df.loc[str(ok), "prob_Normal"])


def test_pred_follows_the_card_and_the_single_label_rule(world):
    """``pred`` is the app's decision (training.runtime: decide on the card's thresholds)."""
    from training.runtime import load_all

    single, multi = load_all([world["single"], world["multi"]])   # no calibration: raw = calibrated
    single.card.thresholds = {"Normal": 0.6, "Pneumonia": 0.8}     # "Normal" 0.6: not used
    P = np.array([[0.45, 0.55], [0.15, 0.85], [np.nan, np.nan]])
    assert single.interpret(P).findings() == ["Normal", "Pneumonia", None]
    multi.card.thresholds = {"No Finding": 0.3, "Pneumonia": 0.8}
    assert multi.interpret(np.array([[0.35, 0.75], [0.2, 0.85]])).findings() == ["No Finding", "Pneumonia"]
    multi.card.thresholds = None               # no thresholds in the card: no decision (as the app)
    assert multi.interpret(np.array([[0.55, 0.45]])).findings() == [None]
