"""CXR-domain pretraining: held-out patients kept out, the card says what it saw, fine-tuning
from it records the initialisation."""

import pandas as pd
import pytest

from tests.helpers.images import stripes_folder
from training.config import TrainConfig
from training.data.formats import load_datasets
from training.data.spec import DataSpec
from training.data.splits import make_split, save_split
from training.data.tasks import get_task
from training.engine.fit import train
from training.errors import CXRError
from training.models.card import read_card
from training.pretrain import PretrainConfig, excluded_rows, pretrain


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return stripes_folder(tmp_path_factory.mktemp("stripes"), 20)


@pytest.fixture(scope="module")
def split(folder, tmp_path_factory):
    ds = load_datasets(DataSpec(str(folder)))
    df = make_split(ds, get_task("pneumonia"), seed=0)
    return save_split(df, tmp_path_factory.mktemp("split") / "split.csv")


def test_excluded_rows_are_val_and_test_by_path_patient_and_content(folder, split, tmp_path):
    ds = load_datasets(DataSpec(str(folder)))
    df = pd.read_csv(split)
    held = set(df.loc[df["part"] != "train", "path"])
    mask, facts = excluded_rows(ds, [split])
    assert set(ds.meta["path"][mask]) == held
    assert facts[0]["rows_excluded"] == len(held) and len(facts[0]["sha256"]) == 64
    # a byte-identical copy of a test image under another name and patient is kept out too
    test_file = df.loc[df["part"] == "test", "path"].iloc[0]
    copy = folder.parent / "copy" / "NORMAL"
    copy.mkdir(parents=True)
    (copy / "other.png").write_bytes(open(test_file, "rb").read())
    both = load_datasets(DataSpec([str(folder), str(copy.parent)]))
    mask, _ = excluded_rows(both, [split])
    assert mask[both.meta["path"].str.endswith("other.png").to_numpy()].all()


def test_not_a_split_file_is_named(folder, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CXRError, match="not a split file"):
        excluded_rows(load_datasets(DataSpec(str(folder))), [bad])


@pytest.mark.slow
def test_pretrain_then_finetune_records_the_initialisation(folder, split, tmp_path):
    cache = tmp_path / "cache"
    cfg = PretrainConfig(data=[str(folder)], exclude=[str(split)], arch="vgg16", img_size=32,
                         epochs=1, batch_size=8, out=str(tmp_path / "cxr-vgg16"), cache_dir=str(cache))
    out = pretrain(cfg, verbose=0)
    card = read_card(out)
    pre = card["pretraining"]
    held = int((pd.read_csv(split)["part"] != "train").sum())
    assert pre["images"] == 40 - held and pre["excluded"][0]["rows_excluded"] == held
    assert card["task"] == "multilabel-within-source" and card["initialisation"]["kind"] == "none"
    # no held-out image is in the pretraining split
    used = set(pd.read_csv(out / "split.csv")["path"])
    assert not used & set(pd.read_csv(split).query("part != 'train'")["path"])

    tcfg = TrainConfig(data=[str(folder)], task="pneumonia", split=str(split), arch="vgg16",
                       img_size=32, mode="finetune", weights=str(out), head_epochs=1, epochs=1,
                       batch_size=8, out=str(tmp_path / "ft"), cache_dir=str(cache))
    ft = read_card(train(tcfg, verbose=0))
    init = ft["initialisation"]
    assert init["kind"] == "cxr-pretrained" and init["model_sha256"] == card["model_sha256"]
    assert "CXR-pretrained here on" in init["summary"] and init["images"] == pre["images"]
    assert ft["transfer"]["mode"] == "finetune"
