"""DICOM Structured Report of one prediction on a DICOM upload (highdicom, built in memory).

The document is a Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33) holding a TID 1500
"Imaging Measurement Report" (126000, DCM)::

    language (TID 1204), observation context (TID 1001): a device observer "cxrlab"
    procedure reported: Plain chest X-ray (399208008, SCT)
    Imaging Measurements (126010, DCM)
      one Measurement Group (TID 1501) per model:
        tracking identifier = the model's name, with a fresh tracking UID
        algorithm identification (TID 4019): name = model name,
          version = "<cxrlab version> sha256:<first 16 hex>", parameters = architecture,
          input size, calibration, per-output thresholds, full sha256, test-set summary, ...
        source of measurement: the uploaded instance
        per output: NUM "Probability of <output>" (99CXRLAB local code), unit (1, UCUM,
          "no units"), the calibrated probability (FD, full precision; DS rounded by highdicom)
        per output: CODE "<output>" (99CXRLAB) = Present (52101004, SCT) when positive (over
          the model's threshold), else Absent (272519000, SCT); none where the model has no
          decision for it (e.g. threshold not estimable: a NO-DECISION text item says why)
    Qualitative Evaluations (C0034375, UMLS; TID 1500 rows 12-14), TEXT items:
      Comment (121106, DCM): "RESEARCH, NOT FOR CLINICAL USE. " + the result's disclaimer
      input quality gate verdict, then one item per gate reason ("warn too_small: ...")
      per-model input-gate warnings, chance-level outputs, per output its transfer evidence
        ("<model>: <output>: validated only on its training sources: ..."), model disagreement, flags
      when source values were not valid DICOM: "Attributes left empty" naming their keywords

"Not for clinical use" is carried in SeriesDescription, in that Comment, and by the flags:
CompletionFlag COMPLETE, PreliminaryFlag PRELIMINARY, VerificationFlag UNVERIFIED.

Privacy: patient and study attributes come only from the source (highdicom copies its
Patient and General Study modules, and the source's equipment into the Contributing Equipment
Sequence: the source's institution, address, department, station name and device serial
number are removed from that copy first). Nothing else identifying is added. A copied value
that is not valid DICOM is left empty and named (by keyword) in the report
(:mod:`app.report.sr_source`); pydicom's validation, which would quote it, is off meanwhile.

A refused upload has no results to report: :class:`~app.report.ReportError`.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import training
from app.report import ReportError, disclaimer, quiet_dicom, test_summary
from app.report.sr_source import character_set, evidence_copy, highdicom_safe, read_source

log = logging.getLogger(__name__)
# highdicom logs the source's UIDs at INFO while it copies attributes: identifiers, kept out
# of the log whatever the root level (its warnings, about content items, stay).
logging.getLogger("highdicom").setLevel(logging.WARNING)

LOCAL = "99CXRLAB"  # private coding scheme for what SNOMED/DCM have no code for (the outputs)
SERIES_DESCRIPTION = "cxrlab AI results - RESEARCH, NOT FOR CLINICAL USE"
SERIES_NUMBER = 9901
MANUFACTURER = "cxrlab"
MODEL_NAME = "cxrlab (research software)"  # the device observer's model and manufacturer name
EQUIPMENT_MODEL = "research software"  # General Equipment: shown as "cxrlab (research software)"
NOT_FOR_CLINICAL_USE = "RESEARCH, NOT FOR CLINICAL USE."

UNITLESS = CodedConcept("1", "UCUM", "no units")
PLAIN_CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
GATE_VERDICT = CodedConcept("GATE-VERDICT", LOCAL, "Input quality gate verdict")
GATE_REASON = CodedConcept("GATE-REASON", LOCAL, "Input quality gate reason")
MODEL_GATE = CodedConcept("MODEL-GATE", LOCAL, "Model input gate warning")
CHANCE = CodedConcept("CHANCE-LEVEL", LOCAL, "No better than chance on its test set")
NO_DECISION = CodedConcept("NO-DECISION", LOCAL, "No present/absent decision")
TRANSFER = CodedConcept("TRANSFER", LOCAL, "Transfer evidence")
AGREEMENT = CodedConcept("DISAGREEMENT", LOCAL, "Models disagree")
FLAG = CodedConcept("FLAG", LOCAL, "Consistency flag")
EMPTIED = CodedConcept("EMPTIED", LOCAL, "Attributes left empty")

def build_sr(result: dict[str, Any], image_bytes: bytes) -> bytes:
    """The SR for ``result`` (the ``/api/predict`` JSON) on the uploaded DICOM, as file bytes.

    Real archives hold values that are not valid DICOM (a birth date ``1970-01-01``): those the
    SR would copy are left empty, and a TEXT item names their attributes (never their values).
    """
    if (result.get("gate") or {}).get("verdict") == "refuse":
        raise ReportError("the input quality gate refused this upload: there are no results to put "
                          "in a DICOM SR; ask for format=pdf to see the reasons")
    models = [m for m in result.get("models") or [] if m]
    if not models:
        raise ReportError("the result has no model outputs to put in a DICOM SR")
    with quiet_dicom():
        source = read_source(image_bytes)
        try:
            buffer = io.BytesIO()
            _document(result, models, source).save_as(buffer, enforce_file_format=True)
        except ReportError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # highdicom refusing the source
            # Its message may quote a tag value: the log and the user get the kind only.
            log.info("DICOM SR not built: %s", type(exc).__name__)
            raise ReportError("a DICOM SR cannot be built from this upload's DICOM header "
                              f"({type(exc).__name__}); ask for format=pdf") from None
    return buffer.getvalue()


def _document(result: dict[str, Any], models: list[dict[str, Any]], source: Dataset) -> hd.sr.ComprehensiveSR:
    evidence, emptied = evidence_copy(source)
    charset = character_set(result, evidence)  # before highdicom_safe: of every value the SR holds
    kept = highdicom_safe(evidence)
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(),
        procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=[_group(model, evidence) for model in models],
    )
    report[0].ContentSequence.append(_qualitative_evaluations(result, models, emptied))
    document = hd.sr.ComprehensiveSR(
        evidence=[evidence],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=EQUIPMENT_MODEL,
        software_versions=str(training.__version__),
        series_description=SERIES_DESCRIPTION,
        is_complete=True,
        is_final=False,  # PRELIMINARY: not a definitive communication of findings
        is_verified=False,
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=LOCAL, name="cxrlab local codes", responsible_organization=MANUFACTURER)],
        specific_character_set=charset,
    )
    for tag, element in kept.items():
        document[tag] = element
    return document


def _observation_context() -> hd.sr.ObservationContext:
    # A stable device UID (derived from the name), so every cxrlab SR names the same observer.
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(prefix=None, entropy_srcs=["cxrlab device observer"]),
        name="cxrlab", manufacturer_name=MODEL_NAME, model_name=MODEL_NAME)
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.cid270.Device, observer_identifying_attributes=device))


def _group(model: dict[str, Any], source: Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 for one model: its algorithm, the source image, a probability and a present/absent per output."""
    outputs = [o for o in model.get("outputs") or [] if o.get("name")]
    measurements = [
        hd.sr.Measurement(name=probability_concept(o["name"]), value=float(o["probability"]), unit=UNITLESS)
        for o in outputs if o.get("probability") is not None]
    evaluations = [
        hd.sr.QualitativeEvaluation(name=finding_concept(o["name"]),
                                    value=codes.SCT.Present if o["positive"] else codes.SCT.Absent)
        for o in outputs if o.get("positive") is not None]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=str(model["name"])),
        algorithm_id=algorithm(model),
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def algorithm(model: dict[str, Any]) -> hd.sr.AlgorithmIdentification:
    """TID 4019 for a model: version carries the checkpoint's hash, parameters its settings."""
    sha = str(model.get("model_sha256") or "")
    version = f"{model.get('cxrlab_version') or 'unknown'} sha256:{sha[:16] or 'unknown'}"
    return hd.sr.AlgorithmIdentification(name=str(model["name"]), version=version,
                                         parameters=list(algorithm_parameters(model)),
                                         manufacturer=MANUFACTURER)


def algorithm_parameters(model: dict[str, Any]) -> Iterator[str]:
    """``key=value`` strings describing how the model's outputs were made and tested."""
    for key in ("architecture", "input_size", "calibration", "created", "model_sha256"):
        if model.get(key) is not None:
            yield f"{key}={model[key]}"
    for output in model.get("outputs") or []:
        if output.get("threshold") is not None:
            yield f"threshold[{output.get('name')}]={output['threshold']}"
    gate = model.get("gate")
    if gate:
        yield f"input_gate={gate.get('verdict')} score={gate.get('score')} p_value={gate.get('p_value')}"
    yield f"test={test_summary(model.get('test'))}"


def _qualitative_evaluations(result: dict[str, Any], models: list[dict[str, Any]],
                             emptied: list[str]) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the disclaimer, the gate's verdict and reasons, the caveats, and which
    attributes were left empty, as TEXT."""
    items = list(caveats(result, models))
    if emptied:
        items.append((EMPTIED, "attributes left empty because their values were not valid DICOM: "
                               + ", ".join(emptied)))
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS,
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([_text(concept, value) for concept, value in items])
    return container


def caveats(result: dict[str, Any], models: list[dict[str, Any]]) -> Iterator[tuple[CodedConcept, str]]:
    """(concept, text) pairs for the Qualitative Evaluations container, the disclaimer first."""
    yield CodedConcept.from_code(codes.DCM.Comment), f"{NOT_FOR_CLINICAL_USE} {disclaimer(result)}"
    gate = result.get("gate") or {}
    yield GATE_VERDICT, str(gate.get("verdict") or "not recorded")
    for reason in gate.get("reasons") or []:
        yield GATE_REASON, f"{reason.get('level')} {reason.get('code')}: {reason.get('message')}"
    for model in models:
        model_gate = model.get("gate") or {}
        if model_gate.get("verdict") == "warn":
            yield MODEL_GATE, (f"{model['name']}: input gate warn (score {model_gate.get('score')}, "
                               f"threshold {model_gate.get('threshold')})")
        for output in model.get("outputs") or []:
            if output.get("chance_level"):
                yield CHANCE, f"{model['name']}: {output.get('name')}"
            if output.get("transfer_note"):  # every output: whether it holds outside its training sources
                yield TRANSFER, f"{model['name']}: {output.get('name')}: {output['transfer_note']}"
            if output.get("no_decision"):  # its Present/Absent item is left out: say why
                yield NO_DECISION, f"{model['name']}: {output.get('name')}: {output['no_decision']}"
    for name, agree in (result.get("agreement") or {}).items():
        if agree and agree.get("disagree"):
            yield AGREEMENT, (f"{name}: {agree.get('n_positive')} of {agree.get('n_decided', agree.get('n_models'))} deciding models "
                              f"positive, probabilities {agree.get('min')} to {agree.get('max')}")
    for flag in result.get("flags") or []:
        yield FLAG, f"{flag.get('model')}: {', '.join(map(str, flag.get('outputs') or []))}: {flag.get('message')}"


def _text(concept: CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=concept, value=value,
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def output_code(name: str, prefix: str) -> str:
    """A local code value (SH: at most 16 characters) for an output name, unique per name."""
    slug = re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-")
    room = 16 - len(prefix)
    if not slug or len(slug) > room:
        # Long (or symbol-only) names: keep a readable start, and a hash so names stay apart.
        digest = hashlib.sha256(name.encode()).hexdigest()[:4].upper()
        slug = f"{slug[:room - 5]}-{digest}".lstrip("-")
    return prefix + slug


def probability_concept(name: str) -> CodedConcept:
    """The NUM's concept name for an output's calibrated probability (LO meaning: 64 characters)."""
    return CodedConcept(output_code(name, "P-"), LOCAL, f"Probability of {name}"[:64])


def finding_concept(name: str) -> CodedConcept:
    """The CODE's concept name for an output's present/absent evaluation."""
    return CodedConcept(output_code(name, "F-"), LOCAL, name[:64])
