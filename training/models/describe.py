"""A table of the registered backbones, for ``python -m training models``."""
from __future__ import annotations

import functools

from training.models.build import build_model, count_params
from training.models.registry import ARCHITECTURES


def describe_architectures(input_size: int | None = None) -> list[dict]:
    """One row per architecture: sizes, preprocessing, Grad-CAM layer, parameter counts.

    Parameters are counted on a frozen model with a 2-output head and random weights
    (no download); each architecture is built once per process and input size.
    """
    return [dict(_describe(name, input_size)) for name in ARCHITECTURES]


@functools.lru_cache(maxsize=None)
def _describe(name: str, input_size: int | None) -> tuple:
    a = ARCHITECTURES[name]
    size = a.input_size if input_size is None else max(int(input_size), a.min_input_size)
    model = build_model(name, ["a", "b"], "multilabel", input_size=size, mode="frozen", weights=None)
    params = count_params(model)
    return (("name", a.name), ("input_size", size), ("preprocess_mode", a.preprocess_mode),
            ("gradcam_layer", a.gradcam_layer), ("weights_file", a.weights_file),
            ("total_params", params["total"]), ("trainable_params", params["trainable"]))
