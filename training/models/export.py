"""Export a cxrlab model folder as a TensorFlow SavedModel (for TensorFlow Serving).

The exported graph is the saved model itself: uint8-valued ``(B, S, S, 3)`` images in,
probabilities out, preprocessing layer included; ``card.json`` is copied beside it so the
outputs' order, input size, preprocessing and thresholds travel with the export.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from training.errors import CXRError
from training.models.card import CARD_FILE, load_model


def export_saved_model(model_dir: str | Path, out: str | Path) -> Path:
    """Write ``out`` (a SavedModel with a ``serve`` signature) from ``model_dir``; return it.

    Needs the TensorFlow backend's ``model.export(format="tf_saved_model")``. ``out`` must
    not exist yet (TensorFlow Serving watches version folders: ``models/<name>/<version>``).
    """
    out = Path(out)
    if out.exists():
        raise CXRError(f"{out}: already exists. What to do: export to a new (version) folder")
    model, _ = load_model(model_dir)
    try:
        model.export(str(out), format="tf_saved_model", verbose=False)
    except ImportError as exc:
        raise CXRError(f"exporting a SavedModel needs TensorFlow ({exc}). "
                       "What to do: pip install tensorflow") from None
    shutil.copy2(Path(model_dir) / CARD_FILE, out / CARD_FILE)
    return out
