"""The commands that take keyword arguments, each a config dataclass whose fields are its flags.

``training.cli`` makes one flag per field (:func:`training.flags.add_config_args`), builds the
dataclass from the parsed flags and calls its :meth:`run`, which calls the library and saves the
resolved config (``dataclasses.asdict``) next to the outputs. A field the command line accepts is
therefore always passed on. ``REQUIRED`` fields must be given; ``positional`` ones have no dashes.
Each ``run`` imports the library parts it calls, so a command loads only what it needs.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from training.config import opt
from training.errors import CXRError
from training.evaluation.thresholds import MIN_PATIENTS, MIN_PATIENTS_HELP
from training.commands_base import CACHE_HELP, DataCommand, report_skipped  # noqa: F401  (re-exported)
from training.commands_eval import CrossCollection, CrossSite
from training.flags import Command, save_resolved




@dataclass
class Report(DataCommand):
    """Dataset report: figures and an HTML page."""

    NAME: ClassVar[str] = "report"
    REQUIRED: ClassVar[tuple[str, ...]] = ("data", "out")
    split: str | None = opt(None, "a saved split CSV: adds per-part tables")
    out: str | None = opt(None, "output folder")

    def run(self) -> int:
        from training.data.report import write_report  # only what this command runs
        from training.data.splits import load_split  # only what this command runs

        ds = self.load()
        index = write_report(ds, self.out, split=load_split(self.split, ds) if self.split else None)
        save_resolved(self, self.out)
        print(f"report: {index}")
        return 0


@dataclass
class Split(DataCommand):
    """Patient-level, label-stratified train/val/test split."""

    NAME: ClassVar[str] = "split"
    REQUIRED: ClassVar[tuple[str, ...]] = ("data", "out")
    task: str = opt("multilabel", "label set the split is stratified by")
    parts: tuple[float, float, float] = opt((0.7, 0.1, 0.2), "TRAIN,VAL,TEST fractions, e.g. 70,10,20",
                                            metavar="T,V,T")
    folds: int | None = opt(None, "k-fold by patient instead of parts")
    seed: int = opt(0, "random seed")
    out: str | None = opt(None, "split CSV to write")

    def run(self) -> int:
        from training.data.splits import make_split, save_split, split_hash  # only what this command runs
        from training.data.tasks import get_task  # only what this command runs

        df = make_split(self.load(), get_task(self.task), parts=tuple(self.parts), seed=self.seed,
                        folds=self.folds)
        out = Path(self.out)
        save_split(df, out)
        save_resolved(self, out.parent, out.stem + ".config.yaml")
        print(f"split: {out} (sha256 {split_hash(out)[:12]})")
        if "part" in df:
            for part, row in df.groupby("part")["patient"].agg(["size", "nunique"]).iterrows():
                print(f"  {part:>10}: {row['size']} images, {row['nunique']} patients")
        return 0


@dataclass
class Predict(Command):
    """Predict files and folders (recursive; DICOM too), through the input gate."""

    NAME: ClassVar[str] = "predict"
    REQUIRED: ClassVar[tuple[str, ...]] = ("model", "paths", "output")
    paths: list[str] = opt(factory=list, help="image files or folders", positional=True)
    model: list[str] = opt(factory=list, help="model folder (repeat for several)", repeat=True)
    output: str | None = opt(None, "CSV to write")
    batch_size: int = opt(32, "images per batch")

    def run(self) -> int:
        from training.evaluation.predict import predict_files, write_predictions  # only what this command runs

        df = predict_files(self.model, self.paths, batch_size=self.batch_size)
        write_predictions(df, self.output)
        save_resolved(self, Path(self.output).parent, Path(self.output).stem + ".config.yaml")
        n_err = int(df["error"].fillna("").astype(bool).sum()) if "error" in df else 0
        n_refused = int((df["gate"] == "refuse").sum()) if "gate" in df else 0
        print(f"predictions: {self.output} ({len(df)} files, {n_err} unreadable, "
              f"{n_refused} refused by the input gate)")
        return 0 if n_err == 0 else 3


@dataclass
class Evaluate(DataCommand):
    """Metrics with patient-bootstrap CIs, figures, HTML report."""

    NAME: ClassVar[str] = "evaluate"
    REQUIRED: ClassVar[tuple[str, ...]] = ("model", "data", "out")
    model: str | None = opt(None, "model folder")
    split: str | None = opt(None, "split CSV (default: the model's own split)")
    part: str = opt("test", "the split part evaluated (test; site: the held-out sites, "
                   "recorded as site-held-out evidence)")
    out: str | None = opt(None, "output folder")
    allow_overlap: bool = opt(False, "allow images the model trained on (flagged in the report)")
    external: bool = opt(False, "label the test set as external")
    threshold: str = opt("youden", "how thresholds are chosen on validation (sensitivity: with "
                         "--target-sensitivity)", choices="threshold_method")
    target_sensitivity: float | None = opt(None, "sensitivity the thresholds aim for")
    min_threshold_patients: int = opt(MIN_PATIENTS, MIN_PATIENTS_HELP)
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    batch_size: int = opt(32, "images per batch")
    cache_dir: str | None = opt(None, CACHE_HELP)
    calibration: str = opt("card", "card: the card's calibration; a method: refit on the model's "
                           "validation part for this evaluation only (the card keeps its own)",
                           choices="evaluate_calibration")

    def run(self) -> int:
        from training.evaluation.evaluate import evaluate_model  # only what this command runs

        evaluate_model(self.model, self.data_spec, split=self.split, part=self.part, out_dir=self.out,
                       allow_overlap=self.allow_overlap, external=self.external,
                       threshold_method=self.threshold, n_boot=self.n_boot,
                       batch_size=self.batch_size, cache_dir=self.cache_dir,
                       target_sensitivity=self.target_sensitivity, calibration=self.calibration,
                       min_patients=self.min_threshold_patients)
        save_resolved(self, self.out)
        print(f"evaluation: {Path(self.out) / 'report.html'}")
        return 0


@dataclass
class Calibrate(DataCommand):
    """Post-hoc calibration: refit on the model's validation part, re-choose the thresholds on
    the calibrated scale, update the card."""

    NAME: ClassVar[str] = "calibrate"
    REQUIRED: ClassVar[tuple[str, ...]] = ("model",)
    model: str | None = opt(None, "model folder")
    split: str | None = opt(None, "split CSV (default: the model's own split)")
    method: str = opt("auto", "calibration method", choices="calibration")
    threshold: str | None = opt(None, "how thresholds are chosen on validation (default: the "
                                "card's, else youden)", choices="threshold_method")
    target_sensitivity: float | None = opt(None, "sensitivity the thresholds aim for")
    min_threshold_patients: int = opt(MIN_PATIENTS, MIN_PATIENTS_HELP)
    batch_size: int = opt(32, "images per batch")
    cache_dir: str | None = opt(None, CACHE_HELP)

    def run(self) -> int:
        from training.evaluation.recalibrate import recalibrate  # only what this command runs

        cal = recalibrate(self.model, data=self.data_spec, split=self.split, method=self.method,
                          threshold_method=self.threshold, target_sensitivity=self.target_sensitivity,
                          batch_size=self.batch_size, cache_dir=self.cache_dir,
                          min_patients=self.min_threshold_patients)  # without --data: the card's data
        save_resolved(self, self.model, "calibrate.config.yaml")
        ece = cal.validation_ece.get("macro") or {}
        print(f"calibration: {cal.method} ({cal.chosen_by}); validation macro ECE "
              f"{ece.get('raw', float('nan')):.4f} -> {ece.get('calibrated', float('nan')):.4f}; "
              f"card updated: {Path(self.model) / 'card.json'} (re-run evaluate for test metrics)")
        return 0


@dataclass
class FitGate(DataCommand):
    """Fit the input gate's OOD statistics of a saved model on its own split (training images;
    thresholds on validation), update the card (without --data: the model's training data)."""

    NAME: ClassVar[str] = "fit-gate"
    REQUIRED: ClassVar[tuple[str, ...]] = ("model",)
    model: str | None = opt(None, "model folder")
    batch_size: int = opt(32, "images per batch")

    def run(self) -> int:
        from training.gate.fit import refit_gate  # only what this command runs

        entry = refit_gate(self.model, data=self.data_spec, batch_size=self.batch_size)
        save_resolved(self, self.model, "fit-gate.config.yaml")
        fitted = entry.fitted_on
        print(f"OOD gate: {fitted.get('train_images')} training / {fitted.get('validation_images')} "
              f"validation images (the p-values' reference; 95th / 99th percentile score "
              f"{entry.warn_threshold:.3f} / {entry.threshold:.3f}); card updated: "
              f"{Path(self.model) / 'card.json'}")
        return 0


@dataclass
class Compare(DataCommand):
    """Fair comparison of several models on one split."""

    NAME: ClassVar[str] = "compare"
    REQUIRED: ClassVar[tuple[str, ...]] = ("data", "split", "out")
    model: list[str] = opt(factory=list, help="model folder (repeat); default all in --models-dir",
                           repeat=True)
    models_dir: str = opt("models", "folder of model folders")
    split: str | None = opt(None, "the split CSV every model is evaluated on")
    part: str = opt("test", "the split part compared")
    out: str | None = opt(None, "output folder")
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    allow_split_mismatch: bool = opt(False, "compare models trained on other splits (flagged)")
    allow_overlap: bool = opt(False, "allow images a model trained on (flagged)")
    threshold: str = opt("youden", "how thresholds are chosen on validation", choices="threshold_method")
    target_sensitivity: float | None = opt(None, "sensitivity the thresholds aim for")
    batch_size: int = opt(32, "images per batch")
    cache_dir: str | None = opt(None, CACHE_HELP)

    def run(self) -> int:
        from training.evaluation.compare import compare_models  # only what this command runs

        models = self.model or sorted(str(p.parent) for p in Path(self.models_dir).glob("*/card.json"))
        if not models:
            raise CXRError(f"no models found in {self.models_dir}. What to do: pass --model DIR "
                           "or a --models-dir with model folders (card.json + model.keras)")
        compare_models(models, self.data_spec, self.split, part=self.part, out_dir=self.out,
                       n_boot=self.n_boot, allow_split_mismatch=self.allow_split_mismatch,
                       allow_overlap=self.allow_overlap, threshold_method=self.threshold,
                       target_sensitivity=self.target_sensitivity,
                       batch_size=self.batch_size, cache_dir=self.cache_dir)
        save_resolved(self, self.out)
        print(f"comparison: {Path(self.out) / 'compare.html'}")
        return 0


@dataclass
class Models(Command):
    """List the architectures with input size and parameter counts."""

    NAME: ClassVar[str] = "models"
    img_size: int | None = opt(None, "input size in px (default: each backbone's own)")

    def run(self) -> int:
        from training.models.describe import describe_architectures  # only what this command runs

        rows = describe_architectures(input_size=self.img_size)
        print(f"{'name':<16}{'input':>6}  {'preprocess':<10}{'total params':>14}"
              f"{'trainable (frozen)':>20}  grad-cam layer")
        for r in rows:
            print(f"{r['name']:<16}{r['input_size']:>6}  {r['preprocess_mode']:<10}"
                  f"{r['total_params']:>14,}{r['trainable_params']:>20,}  {r['gradcam_layer']}")
        return 0


@dataclass
class Download(Command):
    """Download the ieee8023 COVID-19 collection."""

    NAME: ClassVar[str] = "download"
    dest: str | None = opt(None, "folder (default ~/.cache/cxrlab/datasets)")

    def run(self) -> int:
        from training.data.download import download_ieee8023  # only what this command runs

        print(download_ieee8023(self.dest))
        return 0


@dataclass
class Shortcuts(DataCommand):
    """Shortcut checks: source probe, leave-one-source-out (--data: two or more sources),
    lungs-only vs full image."""

    NAME: ClassVar[str] = "shortcuts"
    REQUIRED: ClassVar[tuple[str, ...]] = ("check", "out")
    check: str | None = opt(None, "probe | loso | lungs", positional=True, choices="shortcut_check")
    split: str | None = opt(None, "patient-level split CSV (default: a new one)")
    task: str = opt("pneumonia", "loso: single-label task")
    arch: str = opt("resnet50", "backbone of the features")
    img_size: int = opt(64, "input size in px")
    weights: str | None = opt(None, "backbone weights for features (default random init)")
    features: str = opt("auto", "auto | backbone | stats", choices="shortcut_features")
    cache_dir: str | None = opt(None, CACHE_HELP)
    model: str | None = opt(None, "lungs: model folder")
    ieee8023: str | None = opt(None, "lungs: ieee8023 root (with annotations/)")
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    seed: int = opt(0, "random seed")
    out: str | None = opt(None, "output folder")

    def run(self) -> int:
        from training.audits import shortcuts  # only what this command runs

        common = dict(out_dir=self.out, n_boot=self.n_boot, seed=self.seed)
        if self.check == "lungs":
            if not (self.model and self.ieee8023):
                raise CXRError("shortcuts lungs needs --model DIR and --ieee8023 ROOT")
            result = shortcuts.lung_restricted_eval(self.model, self.ieee8023, **common)
        else:
            if not self.data:
                raise CXRError(f"shortcuts {self.check} needs --data (two or more sources)")
            feats = dict(split_csv=self.split, arch=self.arch, img_size=self.img_size,
                         weights=self.weights, features=self.features, cache_dir=self.cache_dir)
            if self.check == "probe":
                result = shortcuts.source_probe(self.data_spec, **feats, **common)
            else:
                result = shortcuts.leave_one_source_out(self.data_spec, task=self.task, **feats,
                                                        **common)
        save_resolved(self, self.out, f"{self.check}.config.yaml")
        print(f"shortcut check '{self.check}': {self.out}")
        for line in (result.get("summary") or []) if isinstance(result, dict) else []:
            print(line)
        return 0


@dataclass
class Serve(Command):
    """Serve the web app with gunicorn (research tool, not a diagnostic device)."""

    NAME: ClassVar[str] = "serve"
    models_dir: str | None = opt(None, "models to serve (default $CXRLAB_MODELS_DIR or models)")
    compare_dir: str | None = opt(None, "a `compare` output shown on the comparison page")
    bind: str | None = opt(None, "HOST:PORT or unix:PATH (default $CXRLAB_BIND or 127.0.0.1:8000)")

    def run(self) -> int:
        """Replace this process with gunicorn serving the app (settings: ``app/gunicorn_conf.py``)."""
        spec = importlib.util.find_spec("app")
        if spec is None or spec.origin is None:
            raise CXRError("the web app package `app` is not importable. What to do: install cxrlab "
                           "(`pip install .`) or run from the checkout")
        env = dict(os.environ)
        for key, var in (("models_dir", "CXRLAB_MODELS_DIR"), ("compare_dir", "CXRLAB_COMPARE_DIR"),
                         ("bind", "CXRLAB_BIND")):
            if getattr(self, key):
                env[var] = str(getattr(self, key))
        conf = Path(spec.origin).parent / "gunicorn_conf.py"
        argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "app:create_app()"]
        # the address comes from gunicorn once the models are loaded (app/gunicorn_conf.py)
        print(f"starting the web app: loading the models of {env.get('CXRLAB_MODELS_DIR', 'models')}",
              flush=True)
        os.execve(sys.executable, argv, env)  # gunicorn gets the signals (SIGTERM: graceful stop)
        return 0  # not reached


#: The commands above, by name, in the order ``--help`` lists them.
COMMANDS: dict[str, type[Command]] = {c.NAME: c for c in (
    Report, Split, Predict, Evaluate, Calibrate, FitGate, Compare, CrossCollection, CrossSite, Models, Download,
    Shortcuts, Serve)}
