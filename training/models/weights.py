"""Initial backbone weights: ImageNet (Keras cache), random, a weights file, or a cxrlab model.

Never hangs offline: a short reachability probe runs before Keras tries to download.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

import keras

from training.errors import CXRError
from training.io import file_sha256
from training.models.card import CARD_FILE, MODEL_FILE, load_model, read_card
from training.models.parts import backbone_layers
from training.models.registry import Architecture, get_architecture

log = logging.getLogger(__name__)

WEIGHTS_HOST = "https://storage.googleapis.com/"
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 60.0


def normalise_weights(weights: str | os.PathLike | None) -> str | None:
    """None for random init (None, "none", ""), else the weights spec as a string."""
    if weights is None or str(weights).strip().lower() in ("", "none", "null"):
        return None
    return str(weights)


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights (``$KERAS_HOME/models``, default ``~/.keras/models``)."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def cached_weights(a: Architecture) -> Path | None:
    """The cached ImageNet weights file of ``a`` if present (Keras falls back to /tmp/.keras)."""
    for d in (keras_models_dir(), Path("/tmp/.keras/models")):
        if (d / a.weights_file).is_file():
            return d / a.weights_file
    return None


def weights_host_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the Keras weights host answers within ``timeout`` seconds (honours proxies)."""
    try:
        urllib.request.urlopen(urllib.request.Request(WEIGHTS_HOST, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # the host answered, even if not 200
    except (OSError, ValueError):
        return False
    return True


def backbone_with_weights(a: Architecture, x, weights: str | os.PathLike | None):
    """Build ``a`` on tensor ``x`` (layers join the caller's graph); return its output tensor."""
    spec = normalise_weights(weights)
    if spec == "imagenet":
        return _imagenet_backbone(a, x).output
    backbone = a.constructor(include_top=False, weights=None, input_tensor=x)
    if spec is not None:
        _load_local(backbone, a, Path(spec).expanduser())
    return backbone.output


def _imagenet_backbone(a: Architecture, x) -> keras.Model:
    if cached_weights(a) is None and not weights_host_reachable():
        raise CXRError(_offline_message(a, "no connection to storage.googleapis.com"))
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return a.constructor(include_top=False, weights="imagenet", input_tensor=x)
    except Exception as e:  # any download/IO/hash failure: say what to do instead
        raise CXRError(_offline_message(a, f"{type(e).__name__}: {e}")) from e


def _offline_message(a: Architecture, why: str) -> str:
    return (f"cannot get the ImageNet weights of {a.name} ({why}). What to do: download "
            f"{a.weights_file} (keras.applications release files on storage.googleapis.com) "
            f"on a machine with internet and put it in {keras_models_dir()}/ "
            f"(~/.keras/models/), or train without ImageNet weights: --weights none "
            f"or --mode scratch.")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Keras downloads with urlretrieve, which has no timeout of its own."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _load_local(backbone: keras.Model, a: Architecture, path: Path) -> None:
    if not path.exists():
        raise CXRError(f"{path}: weights not found. What to do: give 'imagenet', 'none', "
                       f"a backbone .weights.h5/.h5 file, or a trained model directory (models/NAME).")
    if path.is_dir():
        source = _source_from_model_dir(a, path)
    else:
        source = _source_from_weights_file(a, backbone, path)
    n, total = copy_weights_by_name(source, backbone.layers)
    if n == 0:
        raise CXRError(f"{path}: no backbone layer of {a.name} matched by name and shape. "
                       f"What to do: use weights saved from the same architecture.")
    log.info("transferred weights of %d of %d %s backbone layers from %s", n, total, a.name, path)


def _source_from_model_dir(a: Architecture, path: Path) -> list[keras.layers.Layer]:
    model, card = load_model(path)
    if card.architecture != a.name:
        raise CXRError(f"{path}: is a {card.architecture} model, cannot transfer its weights "
                       f"into {a.name}. What to do: choose a model directory of the same architecture.")
    return backbone_layers(model)  # the head is re-initialised: other task, other outputs


def _source_from_weights_file(a: Architecture, backbone: keras.Model,
                              path: Path) -> list[keras.layers.Layer]:
    """Load the file into a bare backbone (Keras matches weight files by layer order and
    type, skipping mismatches); the caller then copies by layer name where shapes match."""
    size = int(backbone.inputs[0].shape[1])
    source = a.constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    try:
        source.load_weights(str(path), skip_mismatch=True)
    except Exception as e:
        raise CXRError(f"{path}: cannot read it as {a.name} backbone weights ({type(e).__name__}: "
                       f"{e}). What to do: give a .weights.h5/.h5 saved from a {a.name} backbone "
                       f"(include_top=False), or a trained model directory.") from e
    return source.layers


def copy_weights_by_name(source: Iterable[keras.layers.Layer],
                         target: Iterable[keras.layers.Layer]) -> tuple[int, int]:
    """Copy weights from source layers to same-named target layers where all shapes match.

    Returns ``(copied, target layers with weights)``.
    """
    by_name = {layer.name: layer for layer in source}
    copied = total = 0
    for layer in target:
        if not layer.weights:
            continue
        total += 1
        src = by_name.get(layer.name)
        if src is None:
            continue
        values = src.get_weights()
        if [v.shape for v in values] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(values)
            copied += 1
    return copied, total


def describe_initialisation(weights: str | os.PathLike | None) -> dict:
    """Where a model's backbone weights started (the card's ``initialisation``).

    ``kind``: ``imagenet``, ``cxr-pretrained`` (a cxrlab model folder made by ``pretrain``),
    ``cxrlab-model`` (another cxrlab model folder), ``file`` (a weights file) or ``none``
    (random initialisation); ``summary`` says it in one line for the card page and the app.
    """
    spec = normalise_weights(weights)
    if spec is None:
        return {"kind": "none", "summary": "none: random initialisation (trained from scratch)"}
    if spec == "imagenet":
        return {"kind": "imagenet", "summary": "ImageNet (keras.applications weights)"}
    path = Path(spec).expanduser()
    if not path.is_dir():
        return {"kind": "file", "summary": f"weights file {path.name}", "path": str(path)}
    card = read_card(path)
    info = {"path": str(path), "name": card.name, "architecture": card.architecture,
            "model_sha256": card.model_sha256 or file_sha256(path / MODEL_FILE),
            "card_sha256": file_sha256(path / CARD_FILE)}
    pre = card.pretraining
    if pre:
        sources = ", ".join(pre.sources or pre.data)
        return {"kind": "cxr-pretrained", **info, "sources": pre.sources, "images": pre.images,
                "summary": f"CXR-pretrained here on {sources} ({pre.images} images, "
                           f"{pre.task}): {card.name}"}
    return {"kind": "cxrlab-model", **info,
            "summary": f"the backbone of cxrlab model {card.name} ({card.task})"}


def imagenet_obtainable(arch: str) -> bool:
    """True when ``arch``'s ImageNet weights are cached or their host answers now."""
    return cached_weights(get_architecture(arch)) is not None or weights_host_reachable()


def resolve_auto(arch: str, mode: str, weights: str | None) -> tuple[str, str | None, str | None]:
    """Resolve ``weights="auto"``: ImageNet when obtainable, else from scratch.

    Returns ``(mode, weights, note)``; ``note`` says what was changed and why (None when
    nothing was). An explicit ``"imagenet"`` is never changed: it fails offline instead.
    """
    if str(weights).lower() != "auto":
        return mode, weights, None
    if mode == "scratch":
        return mode, None, None
    if imagenet_obtainable(arch):
        return mode, "imagenet", None
    note = (f"ImageNet weights for {arch} cannot be downloaded here (offline?) and are not in "
            f"{keras_models_dir()}: training FROM SCRATCH instead of {mode!r} (weights 'auto'). "
            "Pass --weights imagenet to make this an error, or put the weights file in place.")
    return "scratch", None, note
