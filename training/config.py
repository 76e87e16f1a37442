"""The training configuration: one dataclass, loaded from YAML plus overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.errors import CXRError

CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": ("frozen", "finetune", "scratch"),
    "optimizer": ("adamw", "adam", "sgd"),
    "balance": ("class_weight", "sampler", "none"),
    "on_error": ("raise", "skip"),
    "feature_cache": ("auto", "on", "off"),
    "mixed_precision": ("auto", "on", "off"),
    "resize": ("pad", "crop"),
    "distribute": ("none", "mirrored", "multiworker", "data_parallel", "auto"),
}


@dataclass
class TrainConfig:
    """Everything one training run depends on (saved as ``config.yaml`` and in the card)."""

    data: list[str] = field(default_factory=list)
    fmt: str = "auto"
    task: str = "multilabel"
    #: A saved split CSV; None → make one with ``seed`` and save ``split.csv`` in ``out``.
    split: str | None = None
    parts: tuple[float, float, float] = (0.7, 0.1, 0.2)
    arch: str = "resnet50"
    mode: str = "frozen"
    weights: str | None = "auto"  # imagenet when obtainable, else scratch (said loudly)
    img_size: int | None = None  # None → the architecture's default input size
    epochs: int = 10
    head_epochs: int = 3  # finetune: epochs of stage 1 (head only) before ``epochs`` of stage 2
    batch_size: int = 32
    lr: float = 1e-3
    finetune_lr: float = 1e-5
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    warmup_epochs: int = 1
    augment: bool = True
    balance: str = "class_weight"
    seed: int = 0
    out: str = "models/run"
    name: str | None = None  # None → the name of the ``out`` folder
    cache_dir: str | None = None  # None → training.data.cache.default_cache_dir()
    on_error: str = "raise"
    patience: int = 5  # early stopping on validation loss; 0 disables
    views: list[str] | None = None  # None → the loader's defaults
    modalities: list[str] | None = None
    clip_percentile: float = 0.5
    resize: str = "pad"
    clahe: bool = False
    feature_cache: str = "auto"  # frozen mode: train the head on cached backbone features
    mixed_precision: str = "auto"  # auto → on when a GPU is visible
    workers: int = 1
    max_images: int | None = None  # cap on training rows (deterministic subsample)
    #: data parallelism (training/engine/distribute.py); batch_size is then per replica
    distribute: str = "none"
    scale_lr: bool = True  # distributed: lr (and finetune_lr) × replicas (linear scaling rule)
    #: gradient accumulation: one optimizer update per ``accumulate`` batches (same lr)
    accumulate: int = 1
    #: seconds between backups (written at epoch ends); 0 → after every epoch. Each backup is
    #: the weights + optimizer state (270 MB for ResNet50), too much for 2 s GPU epochs.
    backup_interval: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        self.data = [str(d) for d in self.data]
        self.parts = tuple(float(p) for p in self.parts)  # type: ignore[assignment]
        if isinstance(self.distribute, bool):  # older configs had distribute: true/false
            self.distribute = "mirrored" if self.distribute else "none"
        for key in ("views", "modalities"):
            value = getattr(self, key)
            if isinstance(value, str):
                setattr(self, key, [v.strip() for v in value.split(",") if v.strip()])
        self._check()

    def _check(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise CXRError(f"config: {key}={getattr(self, key)!r} is not one of {list(allowed)}")
        if len(self.parts) != 3 or min(self.parts) < 0 or abs(sum(self.parts) - 1) > 1e-6:
            raise CXRError(f"config: parts={list(self.parts)} must be 3 non-negative fractions summing to 1")
        if self.parts[0] <= 0:
            raise CXRError("config: parts gives no training images; the first fraction must be > 0")
        for key in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, key)) < 1:
                raise CXRError(f"config: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("head_epochs", "warmup_epochs", "patience"):
            if int(getattr(self, key)) < 0:
                raise CXRError(f"config: {key} must be >= 0, got {getattr(self, key)}")
        if not float(self.backup_interval) >= 0:
            raise CXRError(f"config: backup_interval must be >= 0 seconds, got {self.backup_interval}")

    @property
    def run_name(self) -> str:
        """The model's name: ``name`` or the output folder's name."""
        return self.name or Path(self.out).name

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe values (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["parts"] = list(self.parts)
        return out

    def preprocess_config(self, size: int):
        """The :class:`~training.preprocess.PreprocessConfig` of this run at ``size`` px."""
        from training.preprocess import PreprocessConfig

        return PreprocessConfig(size=size, clip_percentile=self.clip_percentile,
                                resize=self.resize, clahe=self.clahe)


def config_keys() -> list[str]:
    """Names of every :class:`TrainConfig` field."""
    return [f.name for f in fields(TrainConfig)]


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(config_keys()))
    if unknown:
        raise CXRError(
            f"{where}: unknown config key(s) {unknown}. "
            f"What to do: use only these keys: {', '.join(config_keys())}"
        )


def load_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (optional), then ``overrides`` that are not None."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise CXRError(f"{path}: config file not found. What to do: check the path")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CXRError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise CXRError(f"{path}: expected a mapping of config keys, got {type(loaded).__name__}")
        _check_keys(loaded, str(path))
        values.update(loaded)
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(extra, "overrides")
    values.update(extra)
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as exc:
        raise CXRError(f"config: invalid value ({exc})") from None


def dump_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (the resolved config saved beside the outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
