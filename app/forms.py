"""The upload form (CSRF-protected), with clinical fields only when a model uses them."""
from __future__ import annotations

import functools
from collections.abc import Iterable

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import FloatField, IntegerField, SelectChoice, SelectField
from wtforms.validators import NumberRange, Optional

from app.uploads import ALLOWED_EXTENSIONS

AUTO = "auto"


class UploadForm(FlaskForm):
    """One chest X-ray (PNG, JPEG or DICOM) and which class the heatmaps explain."""

    file = FileField("Chest X-ray", validators=[
        FileRequired("Choose an image file."),
        FileAllowed(list(ALLOWED_EXTENSIONS), "Upload a PNG, JPEG or DICOM file."),
    ])
    heatmap_class = SelectField("Heatmap for", choices=[SelectChoice(AUTO, "top finding (automatic)")],
                                default=AUTO, validate_choice=True)


#: The report formats the result page offers (an SR only for a DICOM upload).
REPORT_FORMATS = [SelectChoice("pdf", "PDF"), SelectChoice("sr", "DICOM Structured Report")]


@functools.lru_cache(maxsize=8)
def report_form(upload_form: type[UploadForm]) -> type[UploadForm]:
    """The result page's "Download report" form (``static/result.js`` posts it as multipart):
    the upload form again (the file, the heatmap class, the clinical inputs) plus a format."""
    fmt = SelectField("Report", choices=REPORT_FORMATS, default="pdf", validate_choice=True)
    return type("ReportForm", (upload_form,), {"format": fmt})


def repost_fields(form: UploadForm) -> dict[str, str]:
    """The upload's form entries but the file, as the report form's hidden fields: the report
    is computed from the same inputs as the page (a clinical-input model gets its inputs)."""
    fields = {"heatmap_class": form.heatmap_class.data or AUTO}
    for name in getattr(form, "metadata_features", []):
        data = getattr(form, f"meta_{name}").data
        fields[f"meta_{name}"] = "" if data is None else str(data)
    return fields


def _metadata_field(name: str):
    label = name.replace("_", " ").capitalize() + " (optional)"
    if name == "sex":
        return SelectField(label, choices=[SelectChoice("", "unknown"), SelectChoice("M", "male"),
                                            SelectChoice("F", "female")], default="")
    if name == "age":
        return IntegerField(label, validators=[Optional(), NumberRange(0, 120)])
    return FloatField(label, validators=[Optional()])


def make_upload_form(outputs: Iterable[str], metadata_features: Iterable[str]) -> type[UploadForm]:
    """An UploadForm subclass for the loaded models: heatmap choices and clinical fields."""
    choices = [SelectChoice(AUTO, "top finding (automatic)")]
    choices += [SelectChoice(o, o) for o in dict.fromkeys(outputs)]
    attrs = {"heatmap_class": SelectField("Heatmap for", choices=choices, default=AUTO)}
    features = list(metadata_features)
    attrs.update({f"meta_{name}": _metadata_field(name) for name in features})
    form = type("BankUploadForm", (UploadForm,), attrs)
    form.metadata_features = features
    return form


def metadata_values(form: UploadForm) -> dict[str, object]:
    """The clinical fields the user filled in (None when left blank)."""
    values = {}
    for name in getattr(form, "metadata_features", []):
        data = getattr(form, f"meta_{name}").data
        values[name] = None if data in ("", None) else data
    return values
