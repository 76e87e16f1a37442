"""The issue's multi-collection run: ieee8023 (shared data) + generated NIH and CheXpert
collections train one multilabel model and evaluate it end to end."""
import numpy as np
import pytest

from tests.helpers.collections.chexpert import make_chexpert
from tests.helpers.collections.nih import make_nih
from training.config import TrainConfig
from training.data.formats import load_datasets
from training.data.tasks import get_task

pytestmark = pytest.mark.slow


def test_train_and_evaluate_on_three_collections(ieee8023_dir, tmp_path):
    from training.engine.fit import train
    from training.evaluation.evaluate import evaluate_model
    from training.models.card import load_model

    data = [str(ieee8023_dir), str(make_nih(tmp_path / "nih", patients=12)),
            str(make_chexpert(tmp_path, patients=10, valid_patients=4))]
    cfg = TrainConfig(data=data, task="multilabel", arch="vgg16", weights=None, img_size=32,
                      mode="frozen", augment=False, epochs=1, batch_size=16, warmup_epochs=0,
                      patience=0, max_images=64, views=["PA"], cache_dir=str(tmp_path / "cache"),
                      out=str(tmp_path / "run"), on_error="skip", precise_bn=False)
    ds = load_datasets(cfg.data_spec)
    targets = get_task("multilabel").encode(ds)
    ieee = (ds.meta["source"] == "ieee8023").to_numpy()
    nodule, covid = ds.pathologies.index("Nodule"), ds.pathologies.index("COVID-19")
    assert np.isnan(targets[ieee, nodule]).all() and not np.isnan(targets[~ieee & (
        ds.meta["source"] == "nih").to_numpy(), nodule]).any()
    assert np.isnan(targets[~ieee, covid]).all()  # NIH, CheXpert: not annotated, never 0

    out = train(cfg, verbose=0)
    _, card = load_model(out)
    assert set(card.outputs) == set(ds.pathologies) and len(card.outputs) > 20
    assert set(card.data.sources) == {"ieee8023", "nih", "chexpert"}
    evaluate_model(out, cfg.data_spec, out_dir=tmp_path / "eval", n_boot=20)
    assert (tmp_path / "eval" / "metrics.json").is_file()
