"""Transfer evidence on every page and report: an output is relied on (not greyed) only when a
site-held-out or external AUC's CI lies above 0.5; the page, API, PDF and SR say the same."""
from __future__ import annotations

import dataclasses
import io
import subprocess

import re

import pydicom
import pypdf

from app.results import STATUS_WORDS, output_trust, transfer_view
from tests.app.conftest import upload
from tests.app.report.test_sr import texts as sr_texts
from tests.helpers.images import write_xray, write_xray_dicom
from tests.helpers.tools import require_tool
from training.evaluation.evidence import BELOW_CHANCE, SUPPORTED, TRAINING_ONLY, TransferEvidence
from training.models.card import ModelCard

ONLY = STATUS_WORDS[TRAINING_ONLY]         # "validated only on its training sources"
HELD = "ieee8023 locations held out one at a time (5 sites), pooled"
MODEL = "tiny-multi"                       # outputs No Finding, Pneumonia, COVID-19, ARDS


def item(kind: str, value: float, low: float, high: float, **extra) -> dict:
    return {"kind": kind, "auc": {"value": value, "low": low, "high": high},
            "what": HELD if kind == "site_held_out" else "test part (patient-disjoint)",
            "n_images": 336, "n_patients": 290, **extra}


def with_evidence(card: ModelCard, covid: list[dict]) -> ModelCard:
    """``card`` with an internal test above chance for every output and ``covid`` added to
    COVID-19's evidence (the other outputs: internal only)."""
    good = {"value": 0.9, "low": 0.8, "high": 0.97}
    test = {"test_set": "internal", "n_images": 50, "n_patients": 40, "metrics": {
        "outputs": card.outputs, "per_output": {o: {"roc_auc": good} for o in card.outputs},
        "macro": {"roc_auc": good}}}
    evidence = {o: [item("internal", 0.9, 0.8, 0.97)] + (covid if o == "COVID-19" else [])
                for o in card.outputs}
    raw = card.to_json()
    return ModelCard.from_json({**raw, "metrics": {**raw["metrics"], "test": test}, "evidence": evidence})


def client_for(make_app, bank, covid: list[dict] | None):
    """An app whose tiny-multi card has ``covid`` as COVID-19's held-out evidence (None: the
    tiny cards as written, with no evidence at all)."""
    from app.model_bank import ModelBank

    if covid is None:
        return make_app().test_client()
    models = [dataclasses.replace(m, card=with_evidence(m.card, covid)) if m.name == MODEL else m
              for m in bank]
    return make_app(MODEL_BANK=ModelBank(models)).test_client()


def post(client, path, url="/api/predict"):
    return client.post(url, data={"file": (io.BytesIO(path.read_bytes()), path.name)},
                       content_type="multipart/form-data")


def api_outputs(client, tmp_path) -> dict[str, dict[str, dict]]:
    body = post(client, write_xray(tmp_path / "x.png")).get_json()
    return {m["name"]: {o["name"]: o for o in m["outputs"]} for m in body["models"]}


def pdf_text(client, tmp_path) -> str:
    rv = post(client, write_xray(tmp_path / "r.png"), "/api/report?format=pdf")
    assert rv.status_code == 200
    pages = pypdf.PdfReader(io.BytesIO(rv.data)).pages
    return " ".join(" ".join(p.extract_text() or "" for p in pages).split())


def sr_transfer_texts(client, tmp_path) -> tuple[list[str], bytes]:
    rv = post(client, write_xray_dicom(tmp_path / "x.dcm", h=300, w=240), "/api/report?format=sr")
    assert rv.status_code == 200
    return sr_texts(pydicom.dcmread(io.BytesIO(rv.data)), "Transfer evidence"), rv.data


def test_without_evidence_every_output_is_validated_only_on_its_training_sources(make_app, bank, tmp_path):
    client = client_for(make_app, bank, None)
    n_outputs = sum(len(m.outputs) for m in bank)
    outputs = [o for m in api_outputs(client, tmp_path).values() for o in m.values()]
    assert len(outputs) == n_outputs
    for o in outputs:
        assert o["evidence_status"] == ONLY and o["greyed"] is True and o["held_out"] is None
        assert o["transfer_note"].startswith(ONLY + ": not measured at held-out sites")
    page = upload(client, write_xray(tmp_path / "p.png")).get_data(as_text=True)
    assert page.count(f'data-evidence="{ONLY}"') == n_outputs
    assert page.count(f"{ONLY}: not measured") == n_outputs          # as text, not only a tooltip
    assert page.count('class="trust-note greyed"') == n_outputs
    assert "not a diagnostic device" in page                             # the disclaimer stays
    text = pdf_text(client, tmp_path)
    assert text.count("Validated only on its training sources") == n_outputs
    assert "not a diagnostic device" in text
    texts, _ = sr_transfer_texts(client, tmp_path)
    assert sorted(texts) == sorted(f"{m.name}: {o}: {ONLY}: not measured at held-out sites or on an "
                                   "external collection" for m in bank for o in m.outputs)
    card_page = client.get(f"/models/{MODEL}").get_data(as_text=True)
    assert card_page.count("not measured</em>") == 3 * len(bank.get(MODEL).outputs)  # 3 kinds each


def test_site_held_out_ci_above_half_supports_transfer_and_is_not_greyed(make_app, bank, tmp_path):
    client = client_for(make_app, bank, [item("site_held_out", 0.71, 0.58, 0.82, recipe_only=True),
                                         item("external", 0.55, 0.40, 0.70)])
    covid = api_outputs(client, tmp_path)[MODEL]["COVID-19"]
    assert covid["evidence_status"] == STATUS_WORDS[SUPPORTED] == "transfer supported"
    assert covid["greyed"] is False and covid["chance_level"] is False
    assert covid["held_out"] == {"kind": "site_held_out", "value": 0.71, "low": 0.58, "high": 0.82,
                                 "what": HELD, "n_images": 336, "n_patients": 290, "recipe_only": True}
    assert "site-held-out AUC 0.71 (95% CI 0.58 to 0.82)" in covid["transfer_note"]
    assert "not on this model itself" in covid["transfer_note"]
    others = api_outputs(client, tmp_path)[MODEL]
    assert all(o["greyed"] and o["evidence_status"] == ONLY for n, o in others.items() if n != "COVID-19")
    page = upload(client, write_xray(tmp_path / "p.png")).get_data(as_text=True)
    rows = re.findall(r'<tr class="([^"]*)" data-output="([^"]+)"\s+data-evidence="([^"]+)"', page)
    supported = [(name, "greyed" in cls) for cls, name, status in rows if status == "transfer supported"]
    assert supported == [("COVID-19", False)]
    assert "transfer supported: site-held-out AUC 0.71" in page
    assert "Transfer supported: site-held-out AUC 0.71" in pdf_text(client, tmp_path)
    texts, payload = sr_transfer_texts(client, tmp_path)
    assert any(t.startswith(f"{MODEL}: COVID-19: transfer supported: site-held-out AUC 0.71") for t in texts)
    card_page = client.get(f"/models/{MODEL}").get_data(as_text=True)
    assert "0.710" in card_page and "0.580–0.820" in card_page and HELD in card_page
    assert "0.550" in card_page and "this recipe, not this model" in card_page
    _dsrdump_reads(payload, tmp_path)


def test_held_out_ci_below_half_is_below_chance_at_held_out_sites(make_app, bank, tmp_path):
    client = client_for(make_app, bank, [item("external", 0.62, 0.45, 0.78),
                                         item("site_held_out", 0.31, 0.22, 0.41),
                                         item("site_held_out", 0.44, 0.30, 0.49)])
    covid = api_outputs(client, tmp_path)[MODEL]["COVID-19"]
    assert covid["evidence_status"] == STATUS_WORDS[BELOW_CHANCE] == "below chance at held-out sites"
    assert covid["greyed"] is True
    assert covid["held_out"]["value"] == 0.31          # the measurement that decided, not the best
    assert "site-held-out AUC 0.31 (95% CI 0.22 to 0.41)" in covid["transfer_note"]
    page = upload(client, write_xray(tmp_path / "p.png")).get_data(as_text=True)
    assert 'data-evidence="below chance at held-out sites"' in page
    assert "below chance at held-out sites: site-held-out AUC 0.31" in page
    assert "Below chance at held-out sites" in pdf_text(client, tmp_path)
    texts, _ = sr_transfer_texts(client, tmp_path)
    assert any(t.startswith(f"{MODEL}: COVID-19: below chance at held-out sites") for t in texts)


def test_a_held_out_ci_including_half_is_shown_but_does_not_support_transfer():
    evidence = TransferEvidence.from_json({"COVID-19": [item("site_held_out", 0.6, 0.45, 0.74),
                                                        item("external", 0.58, 0.5, 0.66)]})
    view = transfer_view(evidence, "COVID-19")
    assert view["evidence_status"] == ONLY                  # a CI touching 0.5 does not exclude it
    assert view["held_out"]["kind"] == "external"          # the highest lower bound is shown
    assert view["transfer_note"].endswith("(its CI includes 0.5)")


def test_a_chance_level_test_greys_the_output_even_with_supported_transfer(bank):
    card = with_evidence(bank.get(MODEL).card, [item("site_held_out", 0.71, 0.58, 0.82)])
    raw = card.to_json()
    raw["metrics"]["test"]["metrics"]["per_output"]["COVID-19"]["roc_auc"] = {"value": 0.6, "low": 0.4, "high": 0.8}
    trust = output_trust(ModelCard.from_json(raw))["COVID-19"]
    assert trust["evidence_status"] == "transfer supported" and trust["chance_level"] is True
    assert trust["greyed"] is True


def _dsrdump_reads(payload: bytes, tmp_path) -> None:
    """dcmtk reads the SR with its transfer items strictly (no errors)."""
    dsrdump = require_tool("dsrdump", "Debian: apt-get install dcmtk")
    path = tmp_path / "sr.dcm"
    path.write_bytes(payload)
    proc = subprocess.run([dsrdump, "-v", "+Pt", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "Transfer evidence" in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line.startswith("E:")], proc.stderr

