"""The prediction contract's trust parts: agreement, contradictions, chance-level outputs."""
from __future__ import annotations

from app.results import CHANCE, UNTESTED, agreement, exclusive_flags, model_test, output_trust
from training.models.card import ModelCard


def model(name, kind="multilabel", **positive):
    return {"name": name, "kind": kind, "outputs": [
        {"name": o, "probability": p, "positive": p >= 0.5} for o, p in positive.items()]}


def test_agreement_counts_positives_and_spread_per_output():
    models = [model("a", COVID=0.9, Normal=0.1), model("b", COVID=0.3, Normal=0.2), model("c", COVID=0.7)]
    table = agreement(models)
    assert table["COVID"] == {"n_models": 3, "n_decided": 3, "n_positive": 2, "min": 0.3, "max": 0.9,
                              "spread": 0.9 - 0.3, "disagree": True}
    assert table["Normal"]["n_models"] == 2 and table["Normal"]["disagree"] is False


def test_models_without_a_decision_neither_agree_nor_disagree():
    """Two models call it positive, two have no estimable threshold (positive None): unanimous."""
    models = [model("a", COVID=0.9), model("b", COVID=0.8), model("c", COVID=0.2), model("d", COVID=0.1)]
    for m in models[2:]:
        m["outputs"][0]["positive"] = None
    table = agreement(models)
    assert table["COVID"]["n_decided"] == 2 and table["COVID"]["n_positive"] == 2
    assert table["COVID"]["disagree"] is False
    models[3]["outputs"][0]["positive"] = False
    assert agreement(models)["COVID"]["disagree"] is True


def test_unanimous_outputs_are_not_marked():
    table = agreement([model("a", COVID=0.9), model("b", COVID=0.8)])
    assert table["COVID"]["n_positive"] == 2 and not table["COVID"]["disagree"]


def test_no_finding_with_a_finding_is_flagged():
    flags = exclusive_flags([model("a", **{"No Finding": 0.8, "COVID-19": 0.7, "ARDS": 0.1}),
                             model("b", **{"No Finding": 0.8, "COVID-19": 0.2})])
    assert [f["model"] for f in flags] == ["a"]
    assert flags[0]["outputs"] == ["No Finding", "COVID-19"] and "exclude each other" in flags[0]["message"]


def test_served_softmax_model_has_one_class_and_no_flag(bank, tmp_path):
    """The single-label rule gives a softmax model exactly one positive class, so the page
    can no longer flag its own contradiction; "No Finding" + a finding is still flagged."""
    from app.results import result_json
    from tests.helpers.images import write_xray

    for seed in range(3):
        data = write_xray(tmp_path / f"x{seed}.png", "L", 170 + 9 * seed, 160, seed=seed).read_bytes()
        served = result_json(bank.predict(data, "x.png"), bank, "x.png")
        single = next(m for m in served["models"] if m["kind"] == "single")
        assert sum(o["positive"] for o in single["outputs"]) == 1
        assert served["flags"] == exclusive_flags(served["models"]) == []
    softmax = model("s", kind="single", Normal=0.7, Pneumonia=0.3)
    softmax["outputs"][1]["positive"] = True               # not servable: still said, not hidden
    assert [f["model"] for f in exclusive_flags([softmax])] == ["s"]


def _card(per_output=None):
    raw = {"card_version": 1, "name": "m", "architecture": "resnet50", "task": "t", "kind": "multilabel",
           "outputs": ["A", "B"], "input_size": 32,
           "preprocessing": {"size": 32}, "gradcam_layer": "x"}
    if per_output:
        raw["metrics"] = {"validation": {}, "test": {"test_set": "internal", "n_images": 50, "metrics": {
            "outputs": ["A", "B"], "per_output": per_output,
            "macro": {"roc_auc": {"value": 0.7, "low": 0.45, "high": 0.9}}}}}
        raw["test_set"] = "internal"
    return ModelCard.from_json(raw)


def test_outputs_whose_auc_ci_includes_half_are_chance_level():
    card = _card({"A": {"roc_auc": {"value": 0.9, "low": 0.8, "high": 0.97}},
                  "B": {"roc_auc": {"value": 0.6, "low": 0.42, "high": 0.75}}})
    trust = output_trust(card)
    assert trust["A"]["chance_level"] is False and trust["A"]["test_auc"]["low"] == 0.8
    assert trust["B"]["chance_level"] is True and trust["B"]["note"] == CHANCE
    summary = model_test(card)
    assert summary["test_set"] == "internal" and summary["chance_level"] is True   # macro CI has 0.5
    assert "patient-disjoint" in summary["split"]


def test_untested_outputs_are_said_to_be_unknown():
    trust = output_trust(_card())
    assert all(t["chance_level"] and t["note"] == UNTESTED for t in trust.values())
    assert model_test(_card())["test_set"] is None


# ------------------------------------------------------------------ the result page's view

def _entry(name, p, positive, greyed=True, chance=True, tested=False, status="validated only on its training sources"):
    return {"name": name, "probability": p, "raw_probability": p / 2, "threshold": 0.5, "positive": positive,
            "greyed": greyed, "chance_level": chance, "test_auc": {"value": 0.8} if tested else None,
            "evidence_status": status}


def _served(models):
    from app.results import agreement

    return {"models": models, "agreement": agreement(models), "image": {"width": 10, "height": 10}}


def test_matrix_words_every_decision_and_greying_and_marks_absent_outputs():
    from app.results import ABSENT, result_page

    a = {"name": "a", "outputs": [_entry("COVID-19", 0.9, True, greyed=False, chance=False, tested=True,
                                         status="transfer supported"),
                                  _entry("ARDS", 0.2, False, chance=False, tested=True)]}
    b = {"name": "b", "outputs": [_entry("COVID-19", 0.3, False, chance=False, tested=True,
                                         status="below chance at held-out sites")]}
    c = {"name": "c", "outputs": [_entry("COVID-19", 0.6, None), _entry("ARDS", 0.7, True)]}
    page = result_page(_served([a, b, c]))
    assert [r.output for r in page.matrix] == ["COVID-19", "ARDS"]
    covid, ards = page.matrix
    assert [(x.decision, x.marker) for x in covid.cells] == [
        ("positive", None), ("negative", "below chance elsewhere"), ("no decision", "untested")]
    assert covid.agreement == "1 of 2 deciding positive (1 without a decision)" and covid.disagree
    assert ards.cells[1].entry is None and page.cell("b", "ARDS").entry is None     # b lacks ARDS
    assert page.cell("a", "ARDS").marker == "not validated elsewhere"
    assert page.cell("c", "ARDS").marker == "untested"                  # chance level and untested
    assert page.strips == {} and page.first is None                     # no heatmaps asked for
    with_maps = [{**m, "heatmap_class": "COVID-19", "heatmaps": {}, "heatmap_box": {"top": 0},
                  "heatmap_layers": {"COVID-19": "data:image/png;base64,AA=="},
                  "heatmap_notes": {"ARDS": "the map is uniform"}} for m in (a, b)]
    page = result_page(_served(with_maps))
    assert page.first == "COVID-19"
    with_maps[0]["heatmap_class"] = "ARDS"          # one model each: the one both models have
    assert result_page(_served(with_maps)).first == "COVID-19"
    clinical = {**c, "heatmap_class": None, "heatmaps": {}, "heatmap_notes": {"*": "clinical inputs"}}
    assert [f.note for f in result_page(_served([clinical])).strips["COVID-19"]] == ["clinical inputs"]
    assert [(f.layer is not None, f.note) for f in page.strips["ARDS"]] == [(False, "the map is uniform"),
                                                                            (False, ABSENT)]
    assert all(f.layer and f.box == {"top": 0} for f in page.strips["COVID-19"])


def test_no_model_deciding_is_said_in_words():
    from app.results import agreement_words

    assert agreement_words({"n_models": 2, "n_decided": 0, "n_positive": 0}) == "no model decides"
    assert agreement_words({"n_models": 3, "n_decided": 3, "n_positive": 2}) == "2 of 3 deciding positive"


def _matrix_cells(page: str, output: str) -> dict[str, tuple[str, str]]:
    """The matrix row of ``output``: model -> (the cell's classes, its text)."""
    import re

    row = re.search(rf'<tr class="matrix-row[^"]*" data-output="{output}">(.*?)</tr>', page, re.S).group(1)
    return {m: (cls, re.sub(r"<[^>]+>", " ", body)) for cls, m, body in
            re.findall(r'<td class="cell([^"]*)" data-model="([^"]+)">(.*?)</td>', row, re.S)}


def test_result_page_matrix_shows_words_raw_probability_and_the_columns_greying(app, bank, tmp_path):
    """Rendered: a positive says "▲ positive", the raw output is text, a cell is greyed exactly
    where output_trust greys (here one output is made trusted), an absent output says so."""
    import re

    from flask import render_template

    from app.results import result_json, result_page
    from tests.helpers.images import write_xray

    data = write_xray(tmp_path / "x.png", "L", 200, 180, seed=2).read_bytes()
    result = result_json(bank.predict(data, "x.png", heatmaps=True), bank, "x.png")
    multi = next(m for m in result["models"] if m["name"] == "tiny-multi")
    trusted = next(o for o in multi["outputs"] if o["name"] == "COVID-19")
    assert trusted["positive"] and trusted["greyed"]           # card thresholds; untested card
    trusted.update(greyed=False, chance_level=False, test_auc={"value": 0.9, "low": 0.8, "high": 0.95},
                   evidence_status="transfer supported")
    with app.test_request_context():
        page = render_template("result.html", result=result, view=result_page(result), filename="x.png",
                               report=None, scale="data:image/png;base64,AA==")
    covid = _matrix_cells(page, "COVID-19")
    assert "positive" in covid["tiny-multi"][0] and "greyed" not in covid["tiny-multi"][0]
    assert re.search(r"▲\s+positive", covid["tiny-multi"][1])
    assert f"raw {trusted['raw_probability']:.3f}" in covid["tiny-multi"][1]
    assert "absent" in covid["tiny-single"][0] and "not an output of this model" in covid["tiny-single"][1]
    # Everything else is untested: greyed in the matrix as in the per-model column, with its marker.
    for m in result["models"]:
        for o in m["outputs"]:
            if o is trusted:
                continue
            cls, text = _matrix_cells(page, o["name"])[m["name"]]
            assert "greyed" in cls and "untested" in text and f"raw {o['raw_probability']:.3f}" in text
            assert f'class="{"positive" if o["positive"] else ""} greyed" data-output="{o["name"]}"' in page
    # Each positive says so in the matrix, its model's column and its heatmap caption.
    n_positive = sum(o["positive"] for m in result["models"] for o in m["outputs"])
    assert page.count('<span aria-hidden="true">▲ </span>positive') == 3 * n_positive
