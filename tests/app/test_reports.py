"""Real evaluation output in the app: compare_models' report on /compare, evaluate's card metrics."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from tests.training.evaluation.conftest import make_kermany, save_tiny

N_BOOT = 30


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two tiny pneumonia models, compared and evaluated on one split (real output files)."""
    from training.data.formats import load_datasets
    from training.data.spec import DataSpec
    from training.data.splits import make_split, save_split, split_hash
    from training.data.tasks import get_task
    from training.evaluation.compare import compare_models
    from training.evaluation.evaluate import evaluate_model

    root = tmp_path_factory.mktemp("reports")
    data = str(make_kermany(root / "kermany", 24))
    split = save_split(make_split(load_datasets(DataSpec(data)), get_task("pneumonia"), parts=(0.5, 0.25, 0.25),
                                  seed=0), root / "split.csv")
    good = save_tiny(root / "models", "good", "single", ["Normal", "Pneumonia"], "pneumonia", split,
                     ["kermany"], [data])
    bad = save_tiny(root / "models", "inverted", "single", ["Normal", "Pneumonia"], "pneumonia", split,
                    ["kermany"], [data], gain=-2.0)
    compare_models([good, bad], [data], str(split), out_dir=root / "compare", n_boot=N_BOOT)
    evaluate_model(good, [data], str(split), out_dir=root / "eval", n_boot=N_BOOT)
    return {"compare": root / "compare", "good": good, "sha": split_hash(split)}


def _cells(page: str) -> list[str]:
    return re.findall(r'<span class="val">([^<]+)</span>', page)


def test_compare_page_renders_compare_models_report(make_app, evaluated):
    from app.compare_report import load_report

    folder = evaluated["compare"]
    summary = json.loads((folder / "compare.json").read_text())
    rv = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare")
    page = rv.get_data(as_text=True)
    assert rv.status_code == 200
    assert "internal" in page and f">{summary['n_images']}<" in page and f">{summary['n_patients']}<" in page
    assert evaluated["sha"][:12] in page and "split.csv" in page
    assert str(evaluated["compare"].parent) not in page  # the split's name, not the server's folders
    for label in ("AUC", "Sensitivity", "Specificity", "PPV", "F1", "Time per epoch", "Latency"):
        assert f"<th>{label}" in page, label
    row = next(r for r in summary["models"] if r["model"] == "good")
    # Point estimate and CI of a per-output metric, exactly as compare.json holds them (objects).
    sens = row["estimates"]["Pneumonia"]["recall"]
    assert set(sens) == {"value", "low", "high"} and sens["low"] <= sens["value"] <= sens["high"]
    assert f"{sens['value']:.3f}" in page and f"{sens['low']:.3f}–{sens['high']:.3f}" in page
    assert not any(" low" in key for key in row)  # no flattened "<output>: <metric> low" strings
    paired = summary["paired"]["inverted"]
    assert f"{paired['diff']:.3f}" in page and f"{paired['low']:.3f}–{paired['high']:.3f}" in page
    assert f"{paired['p_value']:.3f}" in page and "1.5 s" in page
    assert page.count('class="tag">best') == 1
    # Per output: ROC and PR with operating points, reliability side by side (served, not inlined)
    assert len(summary["figures"]) == 6 and 'src="data:image/png;base64,' not in page
    for f in summary["figures"]:
        assert f'src="/compare/files/{f}"' in page, f
    view = load_report(folder).view
    # 2 outputs x 2 models x 5 metrics + 2 macro AUCs + 1 paired difference + 2 outputs' kappa
    assert len(_cells(page)) == 2 * 2 * 5 + 2 + 1 + 2
    assert page.count('<span class="status">validated only on its training sources<') == 4  # 2 x 2
    assert [m.name for m in view.models] == ["good", "inverted"] and view.outputs == ["Normal", "Pneumonia"]


def test_compare_page_falls_back_to_a_plain_table(make_app, tmp_path):
    from tests.helpers.images import write_xray

    folder = tmp_path / "compare"
    folder.mkdir()
    (folder / "compare.csv").write_text("model,auc\nk-resnet50,0.93\n")
    (folder / "compare.json").write_text(json.dumps({"test_set": "internal"}))
    write_xray(folder / "roc_overlay.png", "RGB")
    page = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare").get_data(as_text=True)
    assert "k-resnet50" in page and "0.93" in page and "roc_overlay.png" in page
    assert 'src="data:image/png;base64,' in page


def test_broken_compare_json_is_explained(make_app, tmp_path):
    folder = tmp_path / "compare"
    folder.mkdir()
    (folder / "compare.json").write_text("{not json")
    rv = make_app(COMPARE_DIR=str(folder)).test_client().get("/compare")
    assert rv.status_code == 200 and "cannot be read" in rv.get_data(as_text=True)


def _bank_with(card, bank):
    from app.model_bank import ModelBank
    from training.models.card import ModelCard

    m = bank.models[1]          # tiny-single: Normal / Pneumonia, like the evaluated model
    typed = ModelCard.from_json({**m.card.to_json(), **card})
    return ModelBank([dataclasses.replace(m, card=typed)]), m


def test_result_and_card_pages_show_evaluated_metrics_with_ci(make_app, bank, evaluated, tmp_path):
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray
    from training.models.card import read_card

    card = read_card(evaluated["good"])
    test = card["metrics"]["test"]
    other, m = _bank_with({"metrics": card["metrics"], "training": card["training"]}, bank)
    client = make_app(MODEL_BANK=other).test_client()
    auc = test["metrics"]["per_output"]["Pneumonia"]["roc_auc"]
    spec = test["metrics"]["per_output"]["Normal"]["specificity"]
    # The result page: the test set in one line and each output's AUC with its CI (compact,
    # so four columns fit); the model card page: every metric with its CI.
    result = upload(client, write_xray(tmp_path / "x.png")).get_data(as_text=True)
    assert "<strong>internal</strong> test set" in result and f"{test['n_images']} images" in result
    assert f"{auc['value']:.2f}" in result and f"{auc['low']:.2f}–{auc['high']:.2f}" in result
    macro = test["metrics"]["macro"]["roc_auc"]
    assert f"macro AUC {macro['value']:.2f}" in result
    page = client.get(f"/models/{m.name}").get_data(as_text=True)
    assert f"{test['n_images']} images, {test['n_patients']} patients" in page
    assert "internal test" in page
    assert f"{auc['value']:.3f}" in page and f"{auc['low']:.3f}–{auc['high']:.3f}" in page
    assert f"{spec['low']:.3f}–{spec['high']:.3f}" in page
    assert len(_cells(page)) == 3 * 5        # Normal, Pneumonia, macro x 5 metrics
    assert "Balanced accuracy" in page and test["thresholds"]["method"] in page
    body = client.post("/api/predict", data={"file": (write_xray(tmp_path / "y.png").open("rb"), "y.png")},
                       content_type="multipart/form-data").get_json()
    api = body["models"][0]["card"]["test"]
    assert api["per_output"]["Pneumonia"]["roc_auc"] == {"value": auc["value"], "low": auc["low"],
                                                         "high": auc["high"]}
    assert api["n_patients"] == test["n_patients"] and api["split_sha256"] == evaluated["sha"]
    # The split by its name and hash: never the server's own path (evaluate records the path).
    folder = str(Path(test["split"]).parent)
    assert folder.startswith("/") and all(folder not in text for text in (result, page, json.dumps(body)))
    assert body["models"][0]["test"]["split"] == "patient-disjoint split (split.csv)"


def test_overlap_warning_is_shown(make_app, bank, evaluated):
    from training.models.card import read_card

    card = read_card(evaluated["good"])
    metrics = json.loads(json.dumps(card["metrics"]))
    metrics["test"]["overlap"] = {"checked": True, "n_images": 3}
    other, m = _bank_with({"metrics": metrics}, bank)
    page = make_app(MODEL_BANK=other).test_client().get(f"/models/{m.name}").get_data(as_text=True)
    assert "3 of" in page and "optimistic" in page


# ------------------------------------------------- the result page's "Download report" re-post

def report_form(page: str) -> dict:
    """The result page's report form: its action, hidden fields, embedded upload and formats."""
    import base64
    import html

    match = re.search(r'<form class="report" method="post" action="([^"]+)" '
                      r'enctype="multipart/form-data"\s+data-filename="([^"]*)">(.*?)</form>', page, re.S)
    assert match, "no report form on the result page"
    action, filename, body = match.groups()
    fields = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', body)}
    payload = re.search(r'<input type="hidden" class="payload" value="([^"]+)">', body).group(1)
    return {"action": action, "filename": html.unescape(filename), "fields": fields,
            "data": base64.b64decode(payload), "formats": re.findall(r'<option value="(\w+)"', body)}


def repost(client, form: dict, fmt: str, **changes):
    """What static/result.js sends: the form's fields, the format, the upload as a file part."""
    import io

    fields = {**form["fields"], "format": fmt, **changes}
    fields["file"] = (io.BytesIO(form["data"]), form["filename"])
    return client.post(form["action"], data=fields, content_type="multipart/form-data",
                       headers={"Accept": "application/json, application/pdf, application/dicom"})


def test_report_form_reposts_the_upload_as_a_file_part(client, tmp_path):
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray_dicom

    dcm = write_xray_dicom(tmp_path / "chest.dcm", h=300, w=240)
    page = upload(client, dcm).get_data(as_text=True)
    form = report_form(page)
    assert form["action"] == "/report" and form["data"] == dcm.read_bytes()
    assert form["formats"] == ["pdf", "sr"] and form["filename"] == "chest.dcm"
    assert set(form["fields"]) == {"csrf_token", "heatmap_class"}
    assert 'name="payload"' not in page                       # never posted as a (×1.33) text field
    for fmt, mime in (("pdf", "application/pdf"), ("sr", "application/dicom")):
        rv = repost(client, form, fmt)
        assert rv.status_code == 200 and rv.mimetype == mime
        assert rv.headers["Content-Disposition"] == f'attachment; filename="chest-cxrlab-{"report.pdf" if fmt == "pdf" else "sr.dcm"}"'
    expired = repost(client, form, "pdf", csrf_token="forged")
    assert expired.status_code == 400 and expired.is_json      # the page's script shows it inline
    assert "expired" in expired.get_json()["message"]


def test_report_repost_has_the_upload_size_limit(make_app, tmp_path):
    import io

    client = make_app(MAX_CONTENT_LENGTH=1024 * 1024).test_client()
    from tests.app.conftest import csrf_token

    token = csrf_token(client)
    big = client.post("/report", data={"csrf_token": token, "format": "pdf", "heatmap_class": "auto",
                                       "file": (io.BytesIO(b"\0" * (1024 * 1024 + 1)), "x.dcm")},
                      content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert big.status_code == 413 and big.get_json()["status"] == 413
    assert "1 MB limit" in big.get_json()["message"]


def test_result_page_says_the_report_needs_javascript(client, tmp_path):
    from tests.app.conftest import upload
    from tests.helpers.images import write_xray

    page = upload(client, write_xray(tmp_path / "x.png")).get_data(as_text=True)
    assert '<div class="report-js" hidden>' in page             # shown by static/result.js
    noscript = re.search(r"<noscript>(.*?)</noscript>", page, re.S).group(1)
    assert "needs JavaScript" in noscript and "POST /api/report" in noscript
    assert report_form(page)["formats"] == ["pdf"]             # a PNG gets no DICOM SR
    script = client.get("/static/result.js").get_data(as_text=True)
    for part in ('new FormData(form)', 'data.append("file"', "fetch(form.action", "createObjectURL",
                 '"Accept": "application/json'):
        assert part in script, part


def test_a_dicom_without_preamble_named_dicom_gets_an_sr(client, tmp_path):
    import io

    import pydicom

    from tests.app.conftest import upload
    from tests.helpers.images import write_xray_dicom

    ds = pydicom.dcmread(write_xray_dicom(tmp_path / "full.dcm", h=300, w=240))
    buffer = io.BytesIO()
    ds.preamble = None
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"
    rv = upload(client, data=data, name="old.dicom")
    assert rv.status_code == 200, rv.get_data(as_text=True)
    form = report_form(rv.get_data(as_text=True))
    assert form["formats"] == ["pdf", "sr"]                    # the decoding rule: a .dicom name
    sr = repost(client, form, "sr")
    assert sr.status_code == 200 and sr.mimetype == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(sr.data)).StudyInstanceUID == ds.StudyInstanceUID


# ------------------------------------------- a model with clinical inputs: the report equals the page

def pdf_probabilities(payload: bytes, outputs: list[str]) -> dict[str, str]:
    """Each output's calibrated probability as the PDF's outputs table prints it (3 decimals)."""
    import io

    import pypdf

    text = " ".join(" ".join(p.extract_text() or "" for p in pypdf.PdfReader(io.BytesIO(payload)).pages).split())
    found = {name: re.findall(rf"\b{re.escape(name)} (\d\.\d{{3}}|nan|—) ", text) for name in outputs}
    assert all(len(v) == 1 for v in found.values()), found
    return {name: v[0] for name, v in found.items()}


def page_probabilities(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-output="([^"]+)"[^>]*>\s*<th>[^<]+</th>\s*<td class="prob"[^>]*>([^<]+)</td>', page))


def test_report_of_a_clinical_input_model_equals_the_page(make_app, tmp_path):
    from app.model_bank import ModelBank
    from tests.app.conftest import upload
    from tests.app.test_metadata import _meta_model_dir
    from tests.helpers.images import write_xray

    bank = ModelBank.from_dir(_meta_model_dir(tmp_path), device="cpu")
    outputs = bank.models[0].outputs
    client = make_app(MODEL_BANK=bank).test_client()
    image = write_xray(tmp_path / "x.png")
    entered = {"meta_age": "1", "meta_sex": "M"}            # mid-range outputs (0.12, 0.88)
    page = upload(client, image, **entered).get_data(as_text=True)
    form = report_form(page)
    assert {k: form["fields"][k] for k in entered} == entered  # the entries travel with the re-post
    with_inputs = pdf_probabilities(repost(client, form, "pdf").data, outputs)
    direct = bank.predict(image.read_bytes(), "x.png", metadata={"age": 1, "sex": "M"}).models[0]
    assert with_inputs == {o.name: f"{o.probability:.3f}" for o in direct.outputs}
    assert page_probabilities(page) == {name: f"{float(p):.2f}" for name, p in with_inputs.items()}
    # Without the inputs, or with others, the model says something else: the checks above can fail.
    blank = pdf_probabilities(repost(client, form, "pdf", meta_age="", meta_sex="").data, outputs)
    other = pdf_probabilities(repost(client, form, "pdf", meta_sex="F").data, outputs)
    assert blank != with_inputs and other != with_inputs


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_report_download_in_a_browser_is_multipart_and_shows_errors_inline(make_app, tmp_path):
    import pydicom

    from tests.app.servers import thread_server
    from tests.app.test_browser import ARGS, CHROMIUM
    from tests.helpers.images import write_xray_dicom
    from tests.helpers.tools import unavailable

    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    dcm = write_xray_dicom(tmp_path / "chest.dcm", h=300, w=240)
    with thread_server(make_app()) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            posts = []
            page.on("request", lambda r: posts.append(r) if r.method == "POST" and r.url.endswith("/report") else None)
            page.goto(url + "/")
            page.set_input_files("input[type=file]", str(dcm))
            page.click("button[type=submit]")
            page.wait_for_selector("form.report button", state="visible", timeout=30_000)
            page.select_option("#format", "sr")
            with page.expect_download() as download:
                page.click("form.report button[type=submit]")
            assert download.value.suggested_filename == "chest-cxrlab-sr.dcm"
            sr = pydicom.dcmread(download.value.path())          # of the upload the page embedded
            assert sr.StudyInstanceUID == pydicom.dcmread(dcm).StudyInstanceUID
            (sent,) = posts
            assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
            # An expired form: the error is shown in the page, the page stays.
            page.evaluate("document.querySelector('form.report [name=csrf_token]').value = 'expired'")
            page.click("form.report button[type=submit]")
            page.wait_for_selector(".report-error:visible", timeout=30_000)
            assert "expired" in page.inner_text(".report-error") and page.locator("section.model").count()
        finally:
            browser.close()


def test_compare_page_shows_the_case_level_comparison(make_app, evaluated):
    folder = evaluated["compare"]
    cases = json.loads((folder / "cases.json").read_text())["outputs"]["Pneumonia"]
    client = make_app(COMPARE_DIR=str(folder)).test_client()
    page = client.get("/compare").get_data(as_text=True)
    assert "Disagreement gallery" in page and "Errors shared and not shared" in page
    for r in cases["rows"]:                         # every gallery case links to its result view
        assert f'href="/compare/cases/{r["case"]}"' in page
    first = cases["rows"][0]
    for cell in first["models"].values():      # probability vs threshold as text, map or why
        assert f"{cell['probability']:.3f}" in page
        assert (f'src="/compare/files/{cell["file"]}"' in page) if "file" in cell else cell["why"] in page
    pair = cases["pairs"][0]
    assert f"{pair['kappa']['value']:.3f}" in page and pair["mcnemar"]["method"] in page
    wrong = cases["errors"]
    assert f'<th>good</th><td class="num">{wrong["good"]}</td>' in page
    assert "case_files" not in page and str(folder) not in page


def test_compare_pictures_are_served_and_nothing_else(make_app, evaluated):
    folder = evaluated["compare"]
    row = json.loads((folder / "cases.json").read_text())["outputs"]["Pneumonia"]["rows"][0]
    client = make_app(COMPARE_DIR=str(folder)).test_client()
    rv = client.get(f"/compare/files/{row['image']}")
    assert rv.status_code == 200 and rv.data[:2] == b"\xff\xd8"   # a JPEG
    for name in ("compare.json", "case_files.json", "../compare/compare.csv", "cases/none.jpg"):
        assert client.get(f"/compare/files/{name}").status_code == 404, name


def test_a_gallery_case_opens_in_the_result_view(make_app, evaluated):
    folder = evaluated["compare"]
    files = json.loads((folder / "case_files.json").read_text())
    case = next(iter(files))
    client = make_app(COMPARE_DIR=str(folder)).test_client()
    rv = client.get(f"/compare/cases/{case}")
    page = rv.get_data(as_text=True)
    assert rv.status_code in (200, 422) and f"test case {case}" in page
    assert Path(files[case]).name not in page                   # the file name is patient data
    assert client.get("/compare/cases/99999").status_code == 404


def test_api_compare_returns_what_the_page_shows(make_app, evaluated):
    folder = evaluated["compare"]
    client = make_app(COMPARE_DIR=str(folder)).test_client()
    data = client.get("/api/compare").get_json()
    assert data["cases"] == json.loads((folder / "cases.json").read_text())
    assert data["summary"]["best"] == json.loads((folder / "compare.json").read_text())["best"]
    assert str(folder.parent) not in json.dumps(data)
    assert make_app().test_client().get("/api/compare").status_code == 404
