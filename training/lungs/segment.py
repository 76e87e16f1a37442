"""A small lung segmentation model (U-Net style, ~120k parameters, 128 px grey input).

Trained on ieee8023's lungVAE masks (:func:`training.audits.lungs.find_lung_masks`) with a
patient-disjoint 80 / 20 split; its Dice on the held-out 20 % is the number to quote. Images
and masks are stretched to a square (not padded): the predicted mask maps back to any image
size by a plain resize. Used to derive lung-region inputs (:mod:`training.lungs.derive`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from training.audits.lungs import find_lung_masks, read_mask
from training.errors import DataError
from training.preprocess import decode_image, normalise

log = logging.getLogger(__name__)

SIZE = 128
#: Percentile clipping before the resize, as the classifier's default preprocessing.
CLIP_PERCENTILE = 0.5


@dataclass(frozen=True)
class SegmentationReport:
    """What the segmentation model was trained on and how well it does on unseen patients."""

    n_train_images: int
    n_test_images: int
    n_test_patients: int
    test_dice: float  # mean per-image Dice on the held-out patients (mask > 0.5)
    epochs: int
    params: int

    def to_json(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def build_unet(size: int = SIZE, base: int = 8, depth: int = 3):
    """U-Net: ``depth`` down/up levels of two 3×3 convs, ``base`` filters doubling per level;
    sigmoid lung probability ``(size, size, 1)`` for a float ``[0, 1]`` grey input."""
    import keras

    def block(x, filters: int):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        return x

    inputs = keras.Input((size, size, 1), name="gray")
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, base * 2 ** level)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = block(x, base * 2 ** depth)
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D()(x)
        x = block(keras.layers.Concatenate()([x, skips[level]]), base * 2 ** level)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lungs")(x)
    return keras.Model(inputs, out, name="lung_unet")


def dice(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-image Dice of boolean ``(N, H, W[, 1])`` masks (1 where both are empty)."""
    t, p = truth.reshape(len(truth), -1).astype(bool), pred.reshape(len(pred), -1).astype(bool)
    inter, total = (t & p).sum(axis=1), t.sum(axis=1) + p.sum(axis=1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def _loss(y_true, y_pred):
    """Binary cross-entropy plus soft Dice: the Dice term keeps small lungs from being ignored."""
    from keras import ops

    bce = ops.mean(ops.binary_crossentropy(y_true, y_pred))
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    soft = 1 - (2 * inter + 1) / (ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3)) + 1)
    return bce + ops.mean(soft)


def to_input(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A decoded grey image as the model's float32 ``(size, size, 1)`` input in [0, 1]."""
    img = Image.fromarray(normalise(gray, CLIP_PERCENTILE))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)[..., None]


def training_pairs(root: str | Path, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``(N, size, size, 1)``, masks (float 0/1) and each image's patient id, for every
    ieee8023 image with a lungVAE mask."""
    root = Path(root)
    masks = find_lung_masks(root)
    meta = pd.read_csv(root / "metadata.csv", usecols=["patientid", "filename"], dtype=str)
    patient_of = dict(zip(meta["filename"], meta["patientid"]))
    xs, ys, patients = [], [], []
    for image, mask in masks.items():
        name = Path(image).name
        xs.append(to_input(decode_image(image), size))
        ys.append(read_mask(mask, (size, size)).astype(np.float32)[..., None])
        patients.append(patient_of.get(name, f"file:{name}"))  # unlisted: its own patient
    if not xs:
        raise DataError("no image has a lung mask", path=root / "annotations",
                        hint="point at the ieee8023 dataset root with annotations/lungVAE-masks")
    return np.stack(xs), np.stack(ys), np.array(patients, dtype=object)


def patient_split(patients: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask: whole patients, drawn at random until ``test_fraction`` of the images."""
    patients = np.asarray(patients, dtype=object)
    order = np.random.default_rng(seed).permutation(sorted(set(patients)))
    test, target = np.zeros(len(patients), dtype=bool), test_fraction * len(patients)
    for p in order:
        if test.sum() >= target:
            break
        test |= patients == p
    return test


def train_segmenter(root: str | Path, epochs: int = 40, seed: int = 0, batch_size: int = 16,
                    size: int = SIZE):
    """Train on 80 % of the masked images' patients; ``(model, report)`` with the held-out Dice."""
    import keras

    keras.utils.set_random_seed(seed)
    x, y, patients = training_pairs(root, size)
    test = patient_split(patients, seed=seed)
    model = build_unet(size)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=_loss)
    model.fit(x[~test], y[~test], batch_size=batch_size, epochs=epochs, shuffle=True, verbose=2)
    pred = model.predict(x[test], batch_size=batch_size, verbose=0) > 0.5
    report = SegmentationReport(int((~test).sum()), int(test.sum()), len(set(patients[test])),
                                float(dice(y[test] > 0.5, pred).mean()), epochs, model.count_params())
    log.info("lung segmentation: Dice %.3f on %d held-out images", report.test_dice, report.n_test_images)
    return model, report


def predict_mask(model, gray: np.ndarray) -> np.ndarray:
    """Boolean lung mask of ``gray`` at the model's size: the two largest regions, holes filled
    (a lung is one piece each side; specks elsewhere are noise)."""
    from scipy import ndimage

    size = int(model.input_shape[1])
    prob = model.predict(to_input(gray, size)[None], verbose=0)[0, ..., 0]
    labels, n = ndimage.label(prob > 0.5)
    if n == 0:
        return np.zeros(prob.shape, dtype=bool)
    sizes = ndimage.sum(np.ones_like(prob), labels, index=range(1, n + 1))
    keep = np.isin(labels, 1 + np.argsort(sizes)[::-1][:2])
    return ndimage.binary_fill_holes(keep)
