"""A model with 22 outputs (the vocabulary across collections) is served and shown readably."""
import html
import re

from tests.app.conftest import upload
from tests.app.tiny_models import write_models
from tests.helpers.images import write_xray
from training.data.pathologies import VOCABULARY

OUTPUTS = list(VOCABULARY[:22])


def test_result_page_lists_every_one_of_22_outputs_once_in_card_order(tmp_path):
    from app import create_app
    from app.model_bank import ModelBank

    root = write_models(tmp_path / "models", [("tiny-wide", "resnet50", "multilabel", OUTPUTS, {})],
                        gated=False)
    app = create_app({"MODEL_BANK": ModelBank.from_dir(root, device="cpu"), "SECRET_KEY": "t",
                      "TESTING": True, "COMPARE_DIR": str(tmp_path / "none")})
    page = upload(app.test_client(), write_xray(tmp_path / "x.png"))
    assert page.status_code == 200
    text = html.unescape(page.get_data(as_text=True))
    rows = [m for m in re.findall(r"<t[hd][^>]*>\s*([^<]+?)\s*</t[hd]>", text) if m in OUTPUTS]
    firsts = list(dict.fromkeys(rows))
    assert firsts == OUTPUTS, f"outputs missing or out of order: {set(OUTPUTS) - set(firsts)}"
