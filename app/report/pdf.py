"""PDF report of one prediction (reportlab platypus, A4, built in memory).

Contents, in order: the title, the disclaimer (also in every page's footer), the file name and
UTC generation time, the uploaded image (at most 1024 px on its longer side), the input quality
gate's verdict and reasons, then per model its identity (architecture, input size, calibration,
full sha256, cxrlab version), its test-set summary, a table of its outputs (greyed, with the
note, where chance-level or validated only on its training sources) and its heatmaps with their
notes; then the models' agreement per output and the consistency flags. A refused upload
gets the refusal and its reasons, the models' identities and no probabilities.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import partial
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (Flowable, Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer,
                                Table, TableStyle)

import training
from app.report import disclaimer, quiet_dicom, test_summary
from training.preprocess import decode_image, normalise

TITLE = "cxrlab report — research tool, not a diagnostic device"
MAX_SIDE = 1024  # px: the embedded upload's longer side (enough to read, keeps the PDF small)
CHANCE_NOTE = "no better than chance on its test set"
GREYED = colors.HexColor("#eeeeee")  # rows not to rely on (chance level, or no transfer evidence)
MISSING = "—"
TEST_SET_WORDING = {
    "internal": ("internal: held out from the same sources as the training data; performance on "
                 "images from other hospitals or devices may be lower"),
    "external": "external: from a source not used in training",
}
DATA_URI = re.compile(r"data:(image/(?:png|jpeg));base64,(.*)", re.S)

_BASE = getSampleStyleSheet()
STYLES = {
    "title": ParagraphStyle("title", parent=_BASE["Title"], fontSize=15, leading=19),
    "h2": ParagraphStyle("h2", parent=_BASE["Heading2"], fontSize=12, leading=15, spaceBefore=8,
                         keepWithNext=1),
    "h3": ParagraphStyle("h3", parent=_BASE["Heading3"], fontSize=10, leading=13, spaceBefore=6,
                         keepWithNext=1),
    "body": ParagraphStyle("body", parent=_BASE["BodyText"], fontSize=8.5, leading=11),
    "cell": ParagraphStyle("cell", parent=_BASE["BodyText"], fontSize=7.5, leading=9),
    "mono": ParagraphStyle("mono", parent=_BASE["BodyText"], fontName="Courier", fontSize=7, leading=9),
    "warn": ParagraphStyle("warn", parent=_BASE["BodyText"], fontName="Helvetica-Bold", fontSize=9,
                           leading=12),
    "footer": ParagraphStyle("footer", parent=_BASE["BodyText"], fontSize=7, leading=8.5,
                             textColor=colors.HexColor("#444444")),
}
GRID = TableStyle([
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
])
KEY_VALUE = TableStyle([
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
])


def build_pdf(result: dict[str, Any], image_bytes: bytes, filename: str,
              now: datetime | None = None, gray: np.ndarray | None = None) -> bytes:
    """The PDF for ``result`` (the ``/api/predict`` JSON) and the uploaded image, as bytes.

    ``gray``: the upload as the prediction decoded it (the app passes it: no second decode).
    """
    text = disclaimer(result)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=14 * mm, bottomMargin=22 * mm, title=TITLE, author="cxrlab",
                            subject=text, creator=f"cxrlab {training.__version__}")
    footer = partial(_footer, text=text)
    doc.build(story(result, image_bytes, filename, doc.width, now, gray), onFirstPage=footer,
              onLaterPages=footer)
    return buffer.getvalue()


def story(result: dict[str, Any], image_bytes: bytes, filename: str, width: float,
          now: datetime | None = None, gray: np.ndarray | None = None) -> list[Flowable]:
    """The report's flowables, top to bottom."""
    now = now or datetime.now(timezone.utc)
    refused = (result.get("gate") or {}).get("verdict") == "refuse"
    flow: list[Flowable] = [
        Paragraph(escape(TITLE), STYLES["title"]),
        _boxed(Paragraph(escape(disclaimer(result)), STYLES["warn"]), width),
        Spacer(1, 4 * mm),
        _key_values([("File", filename), ("Generated", now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")),
                     ("Report by", f"cxrlab {training.__version__}")], width),
        Paragraph("Uploaded image", STYLES["h2"]),
        upload_image(image_bytes, filename, width, gray),
        *gate_section(result.get("gate") or {}, width),
    ]
    for model in result.get("models") or []:
        flow += model_section(model, width, refused)
    if not refused:
        flow += agreement_section(result.get("agreement") or {}, width)
        flow += flags_section(result.get("flags") or [])
    return flow


def _footer(canvas: Canvas, doc: SimpleDocTemplate, text: str) -> None:
    """The disclaimer (``text``) and the page number at the foot of every page."""
    footer = Paragraph(f"{escape(text)} &nbsp; Page {canvas.getPageNumber()}.", STYLES["footer"])
    _, height = footer.wrap(doc.width, doc.bottomMargin)
    canvas.saveState()
    footer.drawOn(canvas, doc.leftMargin, max(4 * mm, doc.bottomMargin - height - 6 * mm))
    canvas.restoreState()


def _p(text: Any, style: str = "cell") -> Paragraph:
    """A Paragraph of escaped text (table cells wrap instead of overflowing)."""
    return Paragraph(escape(MISSING if text is None else str(text)), STYLES[style])


def _boxed(flowable: Flowable, width: float) -> Table:
    table = Table([[flowable]], colWidths=[width])
    table.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor("#b00000")),
                               ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fff4e5"))]))
    return table


def _key_values(rows: Iterable[tuple[str, Any]], width: float, mono: frozenset[str] = frozenset()) -> Table:
    """A two-column label/value table; labels in ``mono`` get a monospaced value (hashes)."""
    data = [[_p(key), _p(value, "mono" if key in mono else "cell")] for key, value in rows]
    table = Table(data, colWidths=[32 * mm, width - 32 * mm], hAlign="LEFT")
    table.setStyle(KEY_VALUE)
    return table


def _grid(header: list[str], rows: list[list[Any]], widths: list[float]) -> Table:
    data = [[_p(h) for h in header]] + [[c if isinstance(c, Flowable) else _p(c) for c in row] for row in rows]
    table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(GRID)
    return table


def _num(value: Any, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _yes_no(value: Any) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def upload_image(image_bytes: bytes, filename: str, width: float,
                 gray: np.ndarray | None = None) -> Flowable:
    """The upload as the models saw it (decoded, 0.5 % percentile clip), or a note why not."""
    try:
        if gray is None:
            with quiet_dicom():
                gray = decode_image(image_bytes, name=filename)
        gray = normalise(gray, 0.5)
    except Exception as exc:  # noqa: BLE001 -- the report still stands without the picture
        # The decoder's message may quote the file name or a tag value: the kind only.
        return _p(f"The image could not be rendered ({type(exc).__name__}); the results below "
                  "do not depend on this picture.", "body")
    picture = PILImage.fromarray(np.round(gray * 255).astype(np.uint8))  # 2-D uint8: mode "L"
    picture.thumbnail((MAX_SIDE, MAX_SIDE), PILImage.Resampling.LANCZOS)  # only ever shrinks
    return _image(picture, max_width=width * 0.7, max_height=110 * mm)


def _image(picture: PILImage.Image, max_width: float, max_height: float) -> Image:
    """A PIL image as a flowable of at most the given size (aspect kept), embedded as PNG."""
    png = io.BytesIO()
    picture.save(png, format="PNG", optimize=False)
    png.seek(0)
    scale = min(max_width / picture.width, max_height / picture.height)
    return Image(png, width=picture.width * scale, height=picture.height * scale)


def heatmap_image(data_uri: str, size: float) -> Flowable:
    """A heatmap from its PNG/JPEG data URI, or a note when it does not decode."""
    match = DATA_URI.fullmatch(data_uri.strip()) if isinstance(data_uri, str) else None
    try:
        if not match:
            raise ValueError("not a PNG or JPEG data URI")
        picture = PILImage.open(io.BytesIO(base64.b64decode(match.group(2), validate=False)))
        picture.load()
    except (ValueError, OSError, binascii.Error) as exc:
        return _p(f"(heatmap could not be decoded: {type(exc).__name__})")
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    return _image(picture, max_width=size, max_height=size)


def gate_section(gate: dict[str, Any], width: float) -> list[Flowable]:
    """The input quality gate: verdict, reasons, and for a refusal that no outputs follow."""
    verdict = gate.get("verdict") or "not recorded"
    flow: list[Flowable] = [Paragraph("Input quality gate", STYLES["h2"]),
                            Paragraph(f"Verdict: <b>{escape(str(verdict))}</b>", STYLES["body"])]
    reasons = gate.get("reasons") or []
    if reasons:
        flow.append(_grid(["Level", "Code", "Message"],
                          [[r.get("level"), r.get("code"), r.get("message")] for r in reasons],
                          [18 * mm, 32 * mm, width - 50 * mm]))
    if verdict == "refuse":
        flow.append(Paragraph("The upload was refused by the input quality gate: the models' outputs "
                              "are not reported.", STYLES["warn"]))
    return flow


def test_wording(test: dict[str, Any] | None) -> str:
    """The test-set summary, with what "internal"/"external" means for trusting it."""
    summary = test_summary(test)
    wording = TEST_SET_WORDING.get((test or {}).get("test_set") or "")
    return f"{summary}. {wording[0].upper()}{wording[1:]}." if wording else f"{summary}."


def model_section(model: dict[str, Any], width: float, refused: bool = False) -> list[Flowable]:
    """One model: identity and test set; unless refused, its outputs and heatmaps."""
    gate = model.get("gate")
    gate_text = (f"{gate.get('verdict')} (OOD score {_num(gate.get('score'))}; p-value "
                 f"{_num(gate.get('p_value'))} against its validation X-rays)" if gate else None)
    identity = _key_values([
        ("Architecture", model.get("architecture")),
        ("Input size", f"{model['input_size']} px" if model.get("input_size") is not None else None),
        ("Calibration", model.get("calibration")),
        ("Model sha256", model.get("model_sha256")),
        ("cxrlab version", model.get("cxrlab_version")),
        ("Created", model.get("created")),
        ("Model input gate", gate_text),
        ("Test set", test_wording(model.get("test"))),
    ], width, mono=frozenset({"Model sha256"}))
    flow: list[Flowable] = [KeepTogether([Paragraph(f"Model: {escape(str(model.get('name')))}", STYLES["h2"]),
                                          identity])]
    if refused:
        return flow
    flow += [Paragraph("Outputs", STYLES["h3"]), outputs_table(model.get("outputs") or [], width)]
    flow += heatmaps(model.get("heatmaps") or {}, model.get("heatmap_notes") or {}, width)
    return flow


def outputs_table(outputs: list[dict[str, Any]], width: float) -> Table:
    """Calibrated and raw probability, threshold, positive, test AUC, and the note: chance
    level, transfer evidence (``transfer_note``), no decision. Greyed rows as on the page."""
    rows, greyed = [], []
    for i, out in enumerate(outputs, start=1):
        if out.get("greyed", out.get("chance_level")):
            greyed.append(i)
        auc = out.get("test_auc") or {}
        auc_text = MISSING if auc.get("value") is None else _num(auc["value"])
        if auc.get("low") is not None and auc.get("high") is not None:
            auc_text += f" ({_num(auc['low'])}-{_num(auc['high'])})"
        rows.append([out.get("name"), _num(out.get("probability")), _num(out.get("raw_probability")),
                     _num(out.get("threshold")), _yes_no(out.get("positive")), auc_text,
                     " ".join(filter(None, [f"{CHANCE_NOTE}." if out.get("chance_level") else "",
                                            f"{out['transfer_note'][0].upper()}{out['transfer_note'][1:]}."
                                            if out.get("transfer_note") else "",
                                            f"No decision: {out['no_decision']}."
                                            if out.get("no_decision") else ""]))])
    fixed = [30 * mm, 20 * mm, 15 * mm, 15 * mm, 13 * mm, 26 * mm]
    table = _grid(["Output", "Probability (calibrated)", "Raw probability", "Threshold", "Positive",
                   "Test AUC (95% CI)", "Note"], rows, fixed + [width - sum(fixed)])
    for row in greyed:
        table.setStyle(TableStyle([("BACKGROUND", (0, row), (-1, row), GREYED)]))
    return table


def heatmaps(maps: dict[str, str], notes: dict[str, str], width: float) -> list[Flowable]:
    """The heatmaps in a grid of four per row (each captioned), then the notes on missing ones."""
    if not maps and not notes:
        return []
    flow: list[Flowable] = [Paragraph("Heatmaps", STYLES["h3"])]
    size = width / 4 - 4 * mm
    cells = [[heatmap_image(uri, size), _p(name)] for name, uri in maps.items()]
    if cells:
        rows = [cells[i:i + 4] for i in range(0, len(cells), 4)]
        rows[-1] += [""] * (4 - len(rows[-1]))
        table = Table(rows, colWidths=[width / 4] * 4, hAlign="LEFT")
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        flow.append(table)
    for name, note in notes.items():
        flow.append(Paragraph(f"<b>{escape(str(name))}</b>: {escape(str(note))}", STYLES["body"]))
    return flow


def agreement_section(agreement: dict[str, dict[str, Any]], width: float) -> list[Flowable]:
    """Per output: how many models ran it, how many called it positive, the probability range."""
    if not agreement:
        return []
    rows = [[name, a.get("n_models"), a.get("n_decided", a.get("n_models")), a.get("n_positive"),
             _num(a.get("min")), _num(a.get("max")), _yes_no(a.get("disagree"))]
            for name, a in agreement.items() if a]
    fixed = [20 * mm] * 6
    return [Paragraph("Agreement between models", STYLES["h2"]),
            _grid(["Output", "Models", "Deciding", "Positive", "Min probability", "Max probability",
                   "Disagree"], rows, [width - sum(fixed), *fixed])]


def flags_section(flags: list[dict[str, Any]]) -> list[Flowable]:
    """Consistency flags (e.g. mutually exclusive outputs both positive), one line each."""
    if not flags:
        return []
    flow: list[Flowable] = [Paragraph("Flags", STYLES["h2"])]
    for flag in flags:
        outputs = ", ".join(map(str, flag.get("outputs") or []))
        flow.append(Paragraph(f"• <b>{escape(str(flag.get('model')))}</b> ({escape(outputs)}): "
                              f"{escape(str(flag.get('message')))}", STYLES["body"]))
    return flow
