"""Image-level checks of the input gate: what can be said before any model runs.

:func:`inspect` turns one :func:`training.preprocess.decode` of an uploaded file into
:class:`ImageFacts` (size, a small RGB preview, DICOM tags); :func:`image_reasons` turns the
facts into :class:`Reason`s. Each check's limits are module constants, measured on the shared
X-rays and non-X-ray images (docs/gate.md, ``benchmarks/bench_gate.py``), not guessed. A reason
quotes a DICOM value only when it is one of the standard's defined terms: anything else in a
tag may be free text (a name, a ward) and is described, never repeated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from training import preprocess as pp
from training.pixels import BLOCK_PIXELS, luma
from training.gate.verdict import Reason

#: Shorter side below this: too little detail for any of the models (refuse).
MIN_SIDE = 128
#: Longer / shorter side: above WARN an unusual crop, above REFUSE not a chest image.
ASPECT_WARN, ASPECT_REFUSE = 2.0, 3.0
#: Standard deviation (0-255 scale) of the preview below which the image is near-constant.
MIN_STD = 4.0
#: Share of the preview's pixels with chroma over CHROMA_PIXEL: over REFUSE a colour picture,
#: over WARN coloured marks (arrows, labels) on an X-ray.
CHROMA_PIXEL = 24.0
COLOUR_WARN, COLOUR_REFUSE = 0.02, 0.5
#: Mediastinum-minus-lung contrast (0-255) below which the image looks inverted (bone dark).
INVERTED_BELOW = -8.0
#: DICOM modalities that are projection radiographs; anything else (CT, MR, US...) is refused.
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "RF", "PX"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "L"})
CHEST_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "RIBS", "HEART", ""})
PREVIEW = 256

#: DICOM defined terms (PS3.3 C.7.3.1.1.1, PS3.16 Annex L, C.7.6.3.1.2): the only tag values a
#: reason may quote.
MODALITY_TERMS = frozenset(
    "AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES FID GM HC HD IO "
    "IOL IVOCT IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN "
    "POS PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT "
    "RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XAPROTOCOL XC "
    "AS CD CF CP CS DD DF DM DS EC FA FS LP MA MS OPR ST VF DR".split())
BODY_PART_TERMS = frozenset(
    "ABDOMEN ABDOMENPELVIS ADRENAL ANKLE AORTA ARM AXILLA BACK BLADDER BRAIN BREAST BRONCHUS "
    "BUTTOCK CALCANEUS CALF CAROTID CEREBELLUM CERVIX CHEEK CHEST CHESTABDOMEN CHESTABDPELVIS "
    "CLAVICLE COCCYX COLON CSPINE CTSPINE DUODENUM EAR ELBOW ESOPHAGUS EXTREMITY EYE FACE FEMUR "
    "FINGER FOOT GALLBLADDER HAND HEAD HEADNECK HEART HIP HUMERUS IAC ILEUM ILIUM JAW JEJUNUM "
    "KIDNEY KNEE LARYNX LEG LIVER LSPINE LSSPINE LUNG MAXILLA MEDIASTINUM MOUTH NECK NECKCHEST "
    "NECKCHESTABDOMEN NECKCHESTABDPELV NOSE ORBIT OVARY PANCREAS PAROTID PATELLA PELVIS PENIS "
    "PHARYNX PROSTATE RADIUS RECTUM RIB RIBS SACRUM SCALP SCAPULA SELLA SHOULDER SKULL SPINE "
    "SPLEEN SSPINE STERNUM STOMACH TESTIS THIGH THORAX THUMB THYROID TIBIA TLSPINE TMJ TOE "
    "TONGUE TRACHEA TSPINE ULNA URETER URETHRA UTERUS WHOLEBODY WRIST ZYGOMA".split())
PHOTOMETRIC_TERMS = frozenset(
    "MONOCHROME1 MONOCHROME2 RGB HSV ARGB CMYK YBR_FULL YBR_FULL_422 YBR_PARTIAL_422 "
    "YBR_PARTIAL_420 YBR_ICT YBR_RCT XYB".split()) | {"PALETTE COLOR"}


@dataclass
class ImageFacts:
    """What the checks need to know about one file (no model involved)."""

    width: int
    height: int
    decoded: np.ndarray                 # float32 (H, W): preprocess.decode's grey image
    preview: np.ndarray                 # uint8 (h, w, 3), longer side <= PREVIEW
    gray: np.ndarray                    # float32 (h, w) in [0, 255], the preview's luma
    dicom: dict[str, Any] = field(default_factory=dict)   # selected tags of a DICOM upload


def inspect(data: bytes, name: str, max_pixels: int | None = None) -> ImageFacts:
    """Facts about an uploaded file, decoded once; :class:`~training.errors.ImageDecodeError`
    if undecodable or larger than ``max_pixels`` (None: ``preprocess.DEFAULT_MAX_PIXELS``)."""
    decoded = pp.decode(data, name=name, max_pixels=max_pixels, preview_size=PREVIEW)
    height, width = decoded.gray.shape
    if decoded.colour_preview is None:  # grey, 16-bit, 1-bit, DICOM: min-max to 0-255
        preview, grey = _gray_preview(decoded.gray)
    else:
        preview = decoded.colour_preview
        grey = luma(preview)
    return ImageFacts(width, height, decoded.gray, preview, grey, decoded.dicom_tags)


def _gray_preview(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(preview, luma)`` of a grayscale image in any intensity range (min-max to 0-255)."""
    img = Image.fromarray(_to_uint8(gray))
    img.thumbnail((PREVIEW, PREVIEW), Image.Resampling.BILINEAR)
    preview = np.repeat(np.asarray(img)[..., None], 3, axis=-1)
    return preview, luma(preview)


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    """Min-max to uint8, a block of rows at a time (no full-size float temporaries)."""
    lo, hi = float(gray.min()), float(gray.max())
    out = np.zeros(gray.shape, np.uint8)
    if hi > lo:
        step = max(1, BLOCK_PIXELS // max(gray.shape[1], 1))
        for top in range(0, gray.shape[0], step):
            block = gray[top:top + step]
            out[top:top + step] = np.rint((block - lo) / (hi - lo) * 255.0)
    return out


def _quote(value: str, terms: frozenset[str]) -> str:
    """`` (VALUE)`` for a defined term; a description for anything else (it may be free text)."""
    return f" ({value})" if value in terms else " (a value that is not a DICOM defined term)"


# ------------------------------------------------------------------ measurements

def colour_share(preview: np.ndarray) -> float:
    """Share of pixels whose chroma (distance from gray in YCbCr's CbCr plane) is large."""
    ycbcr = np.asarray(Image.fromarray(preview).convert("YCbCr"), dtype=np.float32)
    chroma = np.hypot(ycbcr[..., 1] - 128.0, ycbcr[..., 2] - 128.0)
    return float((chroma > CHROMA_PIXEL).mean())


def mediastinum_contrast(gray: np.ndarray) -> float:
    """Mean of the central vertical strip minus the mean of the two lung fields (0-255).

    On a frontal chest X-ray the mediastinum and spine are bright and the lungs dark, so
    this is clearly positive; an inverted image (bone dark) makes it negative.
    """
    g = _square_crop(gray)
    h, w = g.shape
    if min(h, w) < 16:  # too few pixels for regions (such images are refused as too small)
        return 0.0
    rows = slice(int(0.25 * h), int(0.70 * h))
    centre = g[rows, int(0.44 * w):int(0.56 * w)]
    lungs = np.concatenate([g[rows, int(0.18 * w):int(0.34 * w)].ravel(),
                            g[rows, int(0.66 * w):int(0.82 * w)].ravel()])
    return float(centre.mean() - lungs.mean())


def _square_crop(g: np.ndarray) -> np.ndarray:
    h, w = g.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return g[top:top + side, left:left + side]


# ------------------------------------------------------------------ the checks

def image_reasons(facts: ImageFacts) -> list[Reason]:
    """Every reason this image is not, or may not be, a frontal chest X-ray the models can judge."""
    return _geometry(facts) + _content(facts) + _dicom(facts.dicom)


def _geometry(f: ImageFacts) -> list[Reason]:
    out = []
    short, long = sorted((f.width, f.height))
    if short < MIN_SIDE:
        out.append(Reason("too_small", "refuse",
                          f"The image is {f.width}×{f.height} px; its shorter side is under "
                          f"{MIN_SIDE} px, too little detail to judge. Upload the original image."))
    ratio = long / max(short, 1)
    out += _graded("aspect_ratio", ratio, ASPECT_WARN, ASPECT_REFUSE,
                   f"The image is {ratio:.1f} times longer than wide ({f.width}×{f.height} px): "
                   "not a chest radiograph. Upload the whole frontal chest image.",
                   f"Unusual aspect ratio {ratio:.1f} ({f.width}×{f.height} px): the image may be "
                   "cropped; the models saw whole chest images.")
    return out


def _graded(code: str, value: float, warn: float, refuse: float, refused: str,
            warned: str) -> list[Reason]:
    """One check with two limits: over ``refuse`` a refusal, over ``warn`` a warning."""
    if value > refuse:
        return [Reason(code, "refuse", refused)]
    return [Reason(code, "warn", warned)] if value > warn else []


def _content(f: ImageFacts) -> list[Reason]:
    out = []
    std = float(f.gray.std())
    if std < MIN_STD:
        out.append(Reason("near_constant", "refuse",
                          f"The image is nearly uniform (standard deviation {std:.1f} of 255): there "
                          "is nothing to judge. Check the export (window, blank frame)."))
        return out  # colour and photometry mean nothing on a blank image
    share = colour_share(f.preview)
    out += _graded("colour", share, COLOUR_WARN, COLOUR_REFUSE,
                   f"{share:.0%} of the pixels are coloured: this looks like a colour photograph, "
                   "not an X-ray. Upload the radiograph itself (DICOM, or a grayscale PNG/JPEG).",
                   f"{share:.0%} of the pixels are coloured (marks or labels?): the models "
                   "were trained on unmarked grayscale images.")
    contrast = mediastinum_contrast(f.gray)
    if contrast < INVERTED_BELOW:
        out.append(Reason("inverted", "warn",
                          f"The centre of the image is darker than the lung fields (contrast "
                          f"{contrast:.0f}): it may be inverted (bone dark) or not a frontal chest view."))
    return out


def _dicom(tags: dict[str, Any]) -> list[Reason]:
    if not tags:
        return []
    out = []
    modality = tags.get("Modality", "").upper()
    if modality and modality not in XRAY_MODALITIES:
        out.append(Reason("modality", "refuse",
                          f"The DICOM modality{_quote(modality, MODALITY_TERMS)} is not a "
                          "projection radiograph (CR/DX): the models read chest X-rays only."))
    view = tags.get("ViewPosition", "").upper()
    if view in LATERAL_VIEWS:  # a fixed list: safe to quote
        out.append(Reason("lateral_view", "refuse",
                          f"The DICOM view position is {view} (lateral): the models read frontal "
                          "(PA/AP) chest X-rays only."))
    part = tags.get("BodyPartExamined", "").upper()
    if part not in CHEST_PARTS:
        out.append(Reason("body_part", "refuse",
                          f"The DICOM body part{_quote(part, BODY_PART_TERMS)} is not the chest."))
    if tags.get("PresentationLUTShape", "").upper() == "INVERSE":
        out.append(Reason("photometry", "warn",
                          "The DICOM asks for an inverted presentation (Presentation LUT Shape "
                          "INVERSE), which is not applied here: grey levels may be reversed."))
    if int(tags.get("SamplesPerPixel", 1)) > 1:
        photometric = str(tags.get("PhotometricInterpretation", "")).upper()
        out.append(Reason("photometry", "warn",
                          f"The DICOM has colour pixels{_quote(photometric, PHOTOMETRIC_TERMS)}; "
                          "X-rays are MONOCHROME1/2."))
    return out
