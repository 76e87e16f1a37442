"""The training configuration: one dataclass, loaded from YAML plus overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from training import io
from training.data.spec import (FORMAT_CHOICES, LABELER_CHOICES, ON_ERROR_CHOICES,
                                UNCERTAIN_CHOICES, DataSpec, split_commas)
from training.errors import CXRError
from training.evaluation.thresholds import METHODS as THRESHOLD_METHODS, MIN_PATIENTS, MIN_PATIENTS_HELP
from training.preprocess import PreprocessConfig

CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": ("frozen", "finetune", "scratch"),
    "optimizer": ("adamw", "adam", "sgd"),
    "balance": ("class_weight", "sampler", "none"),
    "fmt": FORMAT_CHOICES,  # data.spec
    "on_error": ON_ERROR_CHOICES,  # data.spec
    "uncertain": UNCERTAIN_CHOICES,  # data.spec
    "labeler": LABELER_CHOICES,  # data.spec
    "feature_cache": ("auto", "on", "off"),
    "mixed_precision": ("auto", "on", "off"),
    "resize": ("pad", "crop"),
    "augment_strength": ("default", "strong"),  # engine.augment.STRENGTHS
    "distribute": ("none", "mirrored", "multiworker", "data_parallel", "auto"),
    "jit_compile": ("auto", "on", "off"),
    "threshold_method": THRESHOLD_METHODS,  # evaluation.thresholds
    "calibration": ("auto", "platt", "isotonic", "temperature", "none"),  # evaluation.calibration
    "evaluate_calibration": ("card", "auto", "platt", "isotonic", "temperature", "none"),  # evaluate
    "shortcut_check": ("probe", "loso", "lungs"),  # audits
    "shortcut_features": ("auto", "backbone", "stats"),  # audits.features
}


def opt(default: Any = None, help: str = "", factory: Callable[[], Any] | None = None,
        **cli: Any) -> Any:
    """A config field with its command-line help (``cli``: flag name, metavar, ``cli=False``).

    Every command's options are generated from such fields (``training.flags``), so every
    field is a flag and no flag can be accepted and then dropped.
    """
    meta = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataOptions:
    """The data flags of every command that loads data, declared once (fields first in each
    config, saved under these keys); :attr:`data_spec` is what the loaders get.

    ``on_error``: the library default is "raise"; the command line's is "skip"
    (``training.flags.CLI_DEFAULTS``): a real dataset's metadata lists files it does not ship.
    """

    data: list[str] = opt(factory=list, help="dataset folder or CSV (repeat to combine several)",
                          metavar="DIR", repeat=True)
    fmt: str = opt("auto", "dataset format (auto: detected from the folder; collections: nih, "
                   "chexpert, rsna, covidx, mimic, padchest; docs/collections.md)",
                   flag="--format")
    views: list[str] | None = opt(None, "ieee8023 views to keep, comma-separated, or 'all' "
                                  "(default PA,AP,AP Supine)", metavar="V1,V2")
    modalities: list[str] | None = opt(None, "ieee8023 modalities to keep, comma-separated, or "
                                       "'all' (default X-ray)", metavar="M1,M2")
    on_error: str = opt("raise", "bad rows (missing or unreadable images, unknown labels): stop "
                        "(raise) or skip them and list them in the report (command line "
                        "default: skip)")
    pathologies: list[str] | None = opt(None, "outputs to keep, comma-separated, any spelling of "
                                        "the vocabulary (default: every pathology the data "
                                        "annotate)", metavar="P1,P2")
    uncertain: str = opt("ignore", "uncertain labels (CheXpert, MIMIC -1): ignore (unknown), ones "
                         "or zeros")
    labeler: str = opt("chexpert", "MIMIC-CXR label file: chexpert (the CheXpert labeller's) or "
                       "negbio")

    def __post_init__(self) -> None:
        spec = self.data_spec  # validates and normalises once
        self.data = list(spec.data)
        self.views = None if spec.views is None else list(spec.views)
        self.modalities = None if spec.modalities is None else list(spec.modalities)
        self.pathologies = None if spec.pathologies is None else list(spec.pathologies)

    @property
    def data_spec(self) -> DataSpec:
        """The :class:`~training.data.spec.DataSpec` of these flags."""
        try:
            return DataSpec(self.data, self.fmt, split_commas(self.views),
                            split_commas(self.modalities), self.on_error,
                            split_commas(self.pathologies), self.uncertain, self.labeler)
        except TypeError as exc:
            raise CXRError(f"config: invalid data option ({exc})") from None


#: default peak learning rate of a head on a frozen backbone (and of fine-tuning's stage 1)
HEAD_LR = 1e-3


@dataclass
class TrainConfig(DataOptions):
    """Everything one training run depends on (saved as ``config.yaml`` and in the card)."""

    task: str = opt("multilabel", "label set: multilabel | multilabel-within-source | covid | "
                    "covid-vs-pneumonia | pneumonia | 3class | 4class")
    split: str | None = opt(None, "saved split CSV (default: make one with --seed and save it "
                            "as OUT/split.csv)")
    parts: tuple[float, float, float] = opt((0.7, 0.1, 0.2), "TRAIN,VAL,TEST fractions of a new "
                                            "split, e.g. 70,10,20 or 80,20", metavar="T,V,T")
    arch: str = opt("resnet50", "backbone (python -m training models lists them)")
    mode: str = opt("frozen", "frozen (head only) | finetune (head, then the backbone) | scratch "
                    "(random init, everything trains); offline, weights 'auto' means scratch")
    weights: str | None = opt("auto", "auto (ImageNet when obtainable, else from scratch, said "
                              "loudly) | imagenet | none | a weights file | a cxrlab model folder "
                              "(e.g. one made by `pretrain`: the offline route)")
    img_size: int | None = opt(None, "input size in px (default: the backbone's own)")
    epochs: int = opt(10, "epochs (finetune: of stage 2)")
    head_epochs: int = opt(3, "finetune: epochs of stage 1 (head only) before --epochs of stage 2")
    batch_size: int = opt(32, "batch size (distributed: per replica)")
    lr: float | None = opt(None, "peak learning rate (default: 1e-3 for a head; from scratch, the "
                           "backbone's recipe value: 1e-3, VGG16 1e-4)")
    finetune_lr: float = opt(1e-5, "finetune stage 2: peak learning rate of the whole network")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    optimizer: str = opt("adamw", "optimizer")
    warmup_epochs: int = opt(1, "linear warm-up epochs before the cosine decay")
    augment: bool = opt(True, "small rotations, shifts, zoom, brightness/contrast (never flips)")
    augment_strength: str = opt("default", "augmentation ranges: default | strong (wider rotation, "
                                "shift, zoom and intensity: engine/augment.py)")
    balance: str = opt("class_weight", "class balance: loss weights | balanced sampler | none")
    seed: int = opt(0, "seed of the split, initialisation, batch order and augmentation")
    out: str = opt("models/run", "output folder (models/NAME)")
    name: str | None = opt(None, "model name (default: the name of the output folder)")
    cache_dir: str | None = opt(None, "preprocessed-image cache (default ~/.cache/cxrlab)")
    patience: int = opt(5, "early stopping after this many epochs without a better validation "
                        "loss (0: off)")
    clip_percentile: float = opt(0.5, "preprocessing: intensity percentile clipped at each end")
    resize: str = opt("pad", "preprocessing: pad to square or centre-crop")
    clahe: bool = opt(False, "preprocessing: CLAHE contrast equalisation")
    feature_cache: str = opt("auto", "frozen mode: train the head on cached backbone features")
    mixed_precision: str = opt("auto", "mixed precision (auto: on when a GPU is visible)")
    #: Keras's 0.99 lags far behind in short runs: training/engine/batchnorm.py
    bn_momentum: float = opt(0.9, "momentum of the moving averages of BatchNorm layers trained "
                             "from scratch")
    calibration: str = opt("auto", "probability calibration fitted on the validation part after "
                           "training (thresholds are then chosen on the calibrated scale): auto "
                           "(softmax: temperature; sigmoids: platt or isotonic per output by "
                           "cross-validation on validation) | platt | isotonic | temperature | none")
    min_threshold_patients: int = opt(MIN_PATIENTS, MIN_PATIENTS_HELP)  # evaluation.thresholds
    precise_bn: bool = opt(True, "after training, recompute BatchNorm statistics on the training "
                           "images (precise BN) before validation, thresholds and saving")
    jit_compile: str = opt("auto", "XLA-compile the train step (auto: on for GPUs and JAX, off "
                           "for TensorFlow on the CPU, where it halved training speed)")
    workers: int = opt(1, "batch-loading threads")
    max_images: int | None = opt(None, "cap on training images (deterministic subsample)")
    steps_per_epoch: int | None = opt(None, "an epoch of N training batches (validation, early "
                                      "stopping and backups at its end) instead of a full pass: "
                                      "for collections where a pass takes hours; the order "
                                      "continues across epochs", metavar="N")
    distribute: str = opt("none", "data-parallel training (docs/scaling.md); --batch-size is "
                          "then per replica")
    scale_lr: bool = opt(True, "distributed: lr (and finetune lr) x replicas (linear scaling)")
    accumulate: int = opt(1, "gradient accumulation: one update per K batches", metavar="K")
    #: Each backup is the weights + optimizer state (270 MB for ResNet50, ~1.2 s with the best
    #: weights on the 2-core CPU, BENCHMARKS.md): every minute it cost 2-4 % of CPU training
    #: and a quarter of a 2 s GPU epoch; every 5 minutes it is <0.5 %, and a kill loses <5 min.
    backup_interval: float = opt(300.0, "back up for resume at the first epoch end SECONDS after "
                                 "the last backup (0: every epoch)", flag="--backup-every",
                                 metavar="SECONDS")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parts = tuple(float(p) for p in self.parts)  # type: ignore[assignment]
        if isinstance(self.distribute, bool):  # older configs had distribute: true/false
            self.distribute = "mirrored" if self.distribute else "none"
        self._check()

    def _check(self) -> None:
        names = {f.name for f in fields(self)}
        for key, allowed in CHOICES.items():
            if key in names and getattr(self, key) not in allowed:
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
        if not 0.0 <= float(self.bn_momentum) < 1.0:
            raise CXRError(f"config: bn_momentum must be in [0, 1), got {self.bn_momentum}")
        if not float(self.backup_interval) >= 0:
            raise CXRError(f"config: backup_interval must be >= 0 seconds, got {self.backup_interval}")

    def resolved_lr(self) -> float:
        """``lr``, or the default for this mode and backbone (the registry's ``scratch_lr``)."""
        if self.lr is not None:
            return float(self.lr)
        if self.mode == "scratch":
            from training.models.registry import get_architecture  # keras import, only when needed

            return get_architecture(self.arch).scratch_lr
        return HEAD_LR

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


def load_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                defaults: dict[str, Any] | None = None) -> TrainConfig:
    """A :class:`TrainConfig`: ``defaults``, then a YAML file (optional), then ``overrides``
    that are not None."""
    values: dict[str, Any] = dict(defaults or {})
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
    return io.write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
