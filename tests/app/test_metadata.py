"""Clinical fields appear only when a model's card uses them, and reach that model."""
from __future__ import annotations

import numpy as np

from training.preprocess import decode_image

from tests.app.conftest import upload
from tests.helpers.tiny import tiny_card, tiny_model
from tests.helpers.images import write_xray


def _meta_model_dir(root):
    from training.models.card import save_model

    model = tiny_model(2, "single", filters=2, seed=5, metadata=2)
    card = tiny_card("meta", "single", ["Normal", "Pneumonia"], metadata_features=["age", "sex"])
    return save_model(model, card, root / "meta").parent


def test_form_has_clinical_fields_only_when_used(client, make_app, tmp_path):
    from app.model_bank import ModelBank

    assert 'name="meta_age"' not in client.get("/").get_data(as_text=True)
    bank = ModelBank.from_dir(_meta_model_dir(tmp_path), device="cpu")
    assert bank.metadata_features == ["age", "sex"]
    meta_client = make_app(MODEL_BANK=bank).test_client()
    page = meta_client.get("/").get_data(as_text=True)
    assert 'name="meta_age"' in page and 'name="meta_sex"' in page
    image = write_xray(tmp_path / "x.png")
    got = bank.predict(image.read_bytes(), "x.png", metadata={"age": 0.6, "sex": "F"}).models[0]
    m = bank.models[0]
    x = bank.prepare(decode_image(image.read_bytes()))["meta"][None].astype(np.float32)
    direct = np.asarray(m.model([x, np.array([[0.6, 0.0]], np.float32)]))[0]
    np.testing.assert_allclose([o.probability for o in got.outputs], direct, rtol=1e-5, atol=1e-6)
    rv = upload(meta_client, image, meta_age="60", meta_sex="M")
    assert rv.status_code == 200 and 'data-model="meta"' in rv.get_data(as_text=True)
