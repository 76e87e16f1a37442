"""Command line: builds a config from arguments, calls the library, saves the resolved config.

``cxrlab COMMAND`` (installed) or ``python -m training COMMAND``. Each command imports the
library parts it runs inside its function, so a command loads only what it needs. Commands: report | split |
train | train-all | pretrain | evaluate | calibrate | fit-gate | compare | predict | models | shortcuts | clinical |
semi | download | demo | serve
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402

from training.errors import CXRError  # noqa: E402
from training.config import CHOICES  # noqa: E402
from training.flags import add_config_args, config_from_args, parse_parts  # noqa: E402

log = logging.getLogger("training")


def _data_args(p: argparse.ArgumentParser, required: bool = True, on_error: str = "skip") -> None:
    p.add_argument("--data", action="append", required=required, metavar="DIR",
                   help="dataset folder or CSV (repeat to combine several)")
    p.add_argument("--format", dest="fmt", default="auto", help="auto | ieee8023 | folder | csv")
    p.add_argument("--on-error", choices=("raise", "skip"), default=on_error,
                   help=f"bad rows (missing or unreadable images, unknown labels): stop with an error "
                        f"or skip them and count them in the report (default {on_error})")
    p.add_argument("--views", default=None, help="ieee8023 views to keep, comma-separated (default PA,AP,AP Supine)")
    p.add_argument("--modalities", default=None, help="ieee8023 modalities to keep (default X-ray)")


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """``fmt``/``views``/``modalities`` of :func:`_data_args` as the loaders take them."""
    opts: dict[str, Any] = {"fmt": args.fmt}
    for key in ("views", "modalities"):
        if getattr(args, key):
            opts[key] = tuple(v.strip() for v in getattr(args, key).split(",") if v.strip())
    return opts


def _load_data(args: argparse.Namespace):
    from training.data.formats import load_datasets

    ds = load_datasets(args.data, on_error=args.on_error, **_data_options(args))
    report_skipped(ds.skipped)
    return ds


def report_skipped(skipped: list[dict]) -> None:
    """Say loudly which rows were left out and why (they are also in every report)."""
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for row in skipped:
        key = str(row.get("reason", "?")).split(":")[0][:80]
        reasons[key] = reasons.get(key, 0) + 1
    lines = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    print(f"WARNING: {len(skipped)} row(s) skipped ({lines}). They are listed in the dataset "
          "report; pass --on-error raise to stop on them instead.", file=sys.stderr)


def save_resolved(args: argparse.Namespace | dict, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved command configuration next to its outputs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
    cfg.pop("func", None)
    path = out_dir / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ---------------------------------------------------------------- commands
def cmd_report(args: argparse.Namespace) -> int:
    from training.data.report import write_report
    from training.data.splits import load_split

    ds = _load_data(args)
    split = load_split(args.split, ds) if args.split else None
    index = write_report(ds, args.out, split=split)
    save_resolved(args, args.out)
    print(f"report: {index}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from training.data.splits import make_split, save_split, split_hash
    from training.data.tasks import get_task

    ds = _load_data(args)
    df = make_split(ds, get_task(args.task), parts=args.parts, seed=args.seed, folds=args.folds)
    out = Path(args.out)
    save_split(df, out)
    save_resolved(args, out.parent, out.stem + ".config.yaml")
    counts = df.groupby("part")["patient"].agg(["size", "nunique"]) if "part" in df else None
    print(f"split: {out} (sha256 {split_hash(out)[:12]})")
    if counts is not None:
        for part, row in counts.iterrows():
            print(f"  {part:>10}: {row['size']} images, {row['nunique']} patients")
    return 0


#: Command-line defaults that differ from the library's (a missing file listed in a real
#: dataset's metadata should not stop a run: it is skipped, warned about and listed in the card).
CLI_DEFAULTS = {"on_error": "skip"}


def _train_config(args: argparse.Namespace):
    """The :class:`TrainConfig` of ``train``/``train-all``: defaults, ``--config``, then flags."""
    from training.config import config_keys, load_config

    overrides = {k: getattr(args, k) for k in config_keys() if getattr(args, k, None) is not None}
    return load_config(args.config, overrides, defaults=CLI_DEFAULTS)


def cmd_train(args: argparse.Namespace) -> int:
    from training.engine.fit import train

    model_dir = train(_train_config(args))
    print(f"model: {model_dir}")
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    from training.engine.fit import train_all
    from training.models.registry import FOUR

    archs = tuple(args.archs.split(",")) if args.archs else FOUR
    for d in train_all(_train_config(args), archs=archs):
        print(f"model: {d}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from training.pretrain import PretrainConfig, pretrain

    cfg = config_from_args(PretrainConfig, args)
    out = pretrain(cfg)
    save_resolved(dataclasses.asdict(cfg), out, "pretrain.config.yaml")
    print(f"pretrained model: {out}\n  use it: python -m training train --weights {out} --mode finetune ...")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from training.evaluation.predict import predict_files, write_predictions

    df = predict_files(args.model, args.paths, batch_size=args.batch_size)
    write_predictions(df, args.output)
    n_err = int(df["error"].fillna("").astype(bool).sum()) if "error" in df else 0
    n_refused = int((df["gate"] == "refuse").sum()) if "gate" in df else 0
    print(f"predictions: {args.output} ({len(df)} files, {n_err} unreadable, "
          f"{n_refused} refused by the input gate)")
    return 0 if n_err == 0 else 3


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluation.evaluate import evaluate_model

    kwargs: dict[str, Any] = dict(split=args.split, part=args.part, out_dir=args.out,
                                  allow_overlap=args.allow_overlap, external=args.external,
                                  threshold_method=args.threshold, n_boot=args.n_boot,
                                  on_error=args.on_error, cache_dir=args.cache_dir,
                                  calibration=args.calibration, **_data_options(args))
    if args.target_sensitivity is not None:
        kwargs["target_sensitivity"] = args.target_sensitivity
    evaluate_model(args.model, args.data, **kwargs)
    save_resolved(args, args.out)
    print(f"evaluation: {Path(args.out) / 'report.html'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from training.evaluation.recalibrate import recalibrate

    cal = recalibrate(args.model, data=args.data, split=args.split, method=args.method,
                      threshold_method=args.threshold, target_sensitivity=args.target_sensitivity,
                      batch_size=args.batch_size, on_error=args.on_error, cache_dir=args.cache_dir,
                      **_data_options(args))
    save_resolved(args, args.model, "calibrate.config.yaml")
    ece = cal.validation_ece.get("macro") or {}
    print(f"calibration: {cal.method} ({cal.chosen_by}); validation macro ECE "
          f"{ece.get('raw', float('nan')):.4f} -> {ece.get('calibrated', float('nan')):.4f}; "
          f"card updated: {Path(args.model) / 'card.json'} (re-run evaluate for test metrics)")
    return 0


def cmd_fit_gate(args: argparse.Namespace) -> int:
    from training.engine.gate import refit_gate

    entry = refit_gate(args.model, data=args.data, batch_size=args.batch_size)
    save_resolved(args, args.model, "fit-gate.config.yaml")
    fitted = entry.get("fitted_on", {})
    print(f"OOD gate: {fitted.get('train_images')} training / {fitted.get('validation_images')} "
          f"validation images (the p-values' reference; 95th / 99th percentile score "
          f"{entry['warn_threshold']:.3f} / {entry['threshold']:.3f}); card updated: "
          f"{Path(args.model) / 'card.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from training.evaluation.compare import compare_models

    models = args.model or sorted(str(p.parent) for p in Path(args.models_dir).glob("*/card.json"))
    if not models:
        raise CXRError(f"no models found in {args.models_dir}",)
    compare_models(models, args.data, args.split, part=args.part, out_dir=args.out, n_boot=args.n_boot,
                   on_error=args.on_error, cache_dir=args.cache_dir, **_data_options(args))
    save_resolved(args, args.out)
    print(f"comparison: {Path(args.out) / 'compare.html'}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from training.models.describe import describe_architectures

    rows = describe_architectures(input_size=args.img_size)
    print(f"{'name':<16}{'input':>6}  {'preprocess':<10}{'total params':>14}{'trainable (frozen)':>20}  grad-cam layer")
    for r in rows:
        print(f"{r['name']:<16}{r['input_size']:>6}  {r['preprocess_mode']:<10}{r['total_params']:>14,}"
              f"{r['trainable_params']:>20,}  {r['gradcam_layer']}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from training.data.download import download_ieee8023

    print(download_ieee8023(args.dest))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from training.demo import DemoConfig, run_demo

    cfg = config_from_args(DemoConfig, args)
    run_demo(cfg)
    save_resolved(dataclasses.asdict(cfg), cfg.out, "demo.config.yaml")
    return 0


def cmd_shortcuts(args: argparse.Namespace) -> int:
    from training.audits import shortcuts

    common = dict(out_dir=args.out, n_boot=args.n_boot, seed=args.seed)
    if args.check == "lungs":
        if not (args.model and args.ieee8023):
            raise CXRError("shortcuts lungs needs --model DIR and --ieee8023 ROOT")
        result = shortcuts.lung_restricted_eval(args.model, args.ieee8023, **common)
    else:
        if not args.data:
            raise CXRError(f"shortcuts {args.check} needs --data (two or more sources)")
        feats = dict(split_csv=args.split, arch=args.arch, img_size=args.img_size,
                     weights=args.weights, features=args.features, cache_dir=args.cache_dir)
        if args.check == "probe":
            result = shortcuts.source_probe(args.data, **feats, **common)
        else:
            result = shortcuts.leave_one_source_out(args.data, task=args.task, **feats, **common)
    save_resolved(args, args.out, f"{args.check}.config.yaml")
    print(f"shortcut check '{args.check}': {args.out}")
    for line in (result.get("summary") or []) if isinstance(result, dict) else []:
        print(line)
    return 0


def cmd_semi(args: argparse.Namespace) -> int:
    from training.semi.experiment import SemiConfig, run_experiment

    cfg = config_from_args(SemiConfig, args)
    if not cfg.data:
        raise CXRError("semi needs --data (one or more dataset folders/CSVs)")
    run_experiment(cfg)
    save_resolved(dataclasses.asdict(cfg), cfg.out, "semi.config.yaml")
    print(f"semi-supervised results: {Path(cfg.out) / 'results.json'}, {Path(cfg.out) / 'label_efficiency.png'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Replace this process with gunicorn serving the app (settings: ``app/gunicorn_conf.py``)."""
    import importlib.util

    spec = importlib.util.find_spec("app")
    if spec is None or spec.origin is None:
        raise CXRError("the web app package `app` is not importable. What to do: install cxrlab "
                       "(`pip install .`) or run from the checkout")
    env = dict(os.environ)
    for flag, var in (("models_dir", "CXRLAB_MODELS_DIR"), ("compare_dir", "CXRLAB_COMPARE_DIR"),
                      ("bind", "CXRLAB_BIND")):
        if getattr(args, flag):
            env[var] = str(getattr(args, flag))
    conf = Path(spec.origin).parent / "gunicorn_conf.py"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "app:create_app()"]
    print(f"serving on {env.get('CXRLAB_BIND') or '127.0.0.1:8000'} (models: "
          f"{env.get('CXRLAB_MODELS_DIR', 'models')})", flush=True)
    os.execve(sys.executable, argv, env)  # gunicorn gets the signals (SIGTERM: graceful stop)
    return 0  # not reached


# ---------------------------------------------------------------- parser
def _train_args(p: argparse.ArgumentParser) -> None:
    from training.config import TrainConfig

    p.add_argument("--config", help="YAML training config (command-line options override it)")
    add_config_args(p, TrainConfig)


# ---------------------------------------------------------------- clinical (issue 6)
def cmd_clinical(args: argparse.Namespace) -> int:
    """Run one clinical experiment (fusion | prognosis | severity) and print its table."""
    from training.clinical.experiments import EXPERIMENTS, ExperimentConfig, summary

    cfg = config_from_args(ExperimentConfig, args)
    if not cfg.data:
        raise CXRError("clinical needs --data (the ieee8023 covid-chestxray folder)")
    results = EXPERIMENTS[args.experiment](cfg)
    save_resolved({"experiment": args.experiment, **dataclasses.asdict(cfg)}, cfg.out)
    print(summary(results))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def _clinical_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    from training.clinical.experiments import ExperimentConfig

    p = add("clinical", cmd_clinical, "clinical metadata fusion, prognosis and severity (ieee8023)")
    p.add_argument("experiment", choices=("fusion", "prognosis", "severity"))
    add_config_args(p, ExperimentConfig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrlab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("report", cmd_report, "dataset report: figures and an HTML page")
    _data_args(p)
    p.add_argument("--split", help="a saved split CSV: adds per-part tables")
    p.add_argument("--out", required=True)

    p = add("split", cmd_split, "patient-level, label-stratified train/val/test split")
    _data_args(p)
    p.add_argument("--task", default="multilabel")
    p.add_argument("--parts", type=parse_parts, default=(0.7, 0.1, 0.2), help="TRAIN,VAL,TEST (default 70,10,20)")
    p.add_argument("--folds", type=int, help="k-fold by patient instead of parts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="split CSV to write")

    _train_args(add("train", cmd_train, "train one model"))
    p = add("train-all", cmd_train_all, "train the four backbones on one split with one budget")
    _train_args(p)
    p.add_argument("--archs", help="comma-separated (default resnet50,inception_v3,xception,vgg16)")

    from training.pretrain import PretrainConfig

    p = add("pretrain", cmd_pretrain, "CXR-domain pretraining on the local data sets (the offline "
            "substitute for ImageNet weights): supervised on every label they carry")
    add_config_args(p, PretrainConfig)

    p = add("predict", cmd_predict, "predict files and folders (recursive; DICOM too)")
    p.add_argument("--model", action="append", required=True, help="model folder (repeat for several)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--batch-size", type=int, default=32)

    p = add("evaluate", cmd_evaluate, "metrics with patient-bootstrap CIs, figures, HTML report")
    p.add_argument("--model", required=True)
    _data_args(p)
    p.add_argument("--split", help="split CSV (default: the model's own split)")
    p.add_argument("--part", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--allow-overlap", action="store_true", help="allow images the model trained on (flagged)")
    p.add_argument("--external", action="store_true", help="label the test set as external")
    p.add_argument("--threshold", default="youden", choices=CHOICES["threshold_method"],
                   help="how thresholds are chosen on validation (sensitivity: with --target-sensitivity)")
    p.add_argument("--target-sensitivity", type=float)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--cache-dir", help="preprocessed-image cache (default $CXRLAB_CACHE or ~/.cache/cxrlab)")
    p.add_argument("--calibration", default="card", choices=("card",) + CHOICES["calibration"],
                   help="card: the card's calibration (default); a method: refit on the model's "
                        "validation part for this evaluation only (the card keeps its own)")

    p = add("calibrate", cmd_calibrate, "post-hoc calibration: refit on the model's validation "
            "part, re-choose the thresholds on the calibrated scale, update the card")
    p.add_argument("--model", required=True)
    _data_args(p, required=False)
    p.add_argument("--split", help="split CSV (default: the model's own split)")
    p.add_argument("--method", default="auto", choices=CHOICES["calibration"])
    p.add_argument("--threshold", default=None, choices=CHOICES["threshold_method"],
                   help="how thresholds are chosen on validation (default: the card's, else youden)")
    p.add_argument("--target-sensitivity", type=float)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", help="preprocessed-image cache (default $CXRLAB_CACHE or ~/.cache/cxrlab)")

    p = add("fit-gate", cmd_fit_gate, "fit the input gate's OOD statistics of a saved model on "
            "its own split (training images; thresholds on validation), update the card")
    p.add_argument("--model", required=True)
    p.add_argument("--data", action="append", metavar="DIR",
                   help="dataset folders (default: the model's training data)")
    p.add_argument("--batch-size", type=int, default=32)

    p = add("compare", cmd_compare, "fair comparison of several models on one split")
    p.add_argument("--model", action="append", help="model folder (repeat); default all in --models-dir")
    p.add_argument("--models-dir", default="models")
    _data_args(p)
    p.add_argument("--split", required=True)
    p.add_argument("--part", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--cache-dir", help="preprocessed-image cache (default $CXRLAB_CACHE or ~/.cache/cxrlab)")

    p = add("models", cmd_models, "list the architectures with input size and parameter counts")
    p.add_argument("--img-size", type=int)

    p = add("download", cmd_download, "download the ieee8023 COVID-19 collection")
    p.add_argument("--dest", help="folder (default ~/.cache/cxrlab/datasets)")

    p = add("shortcuts", cmd_shortcuts,
            "shortcut checks: source probe, leave-one-source-out, lungs-only vs full image")
    p.add_argument("check", choices=("probe", "loso", "lungs"))
    p.add_argument("--data", action="append", help="dataset folders (probe/loso: two or more sources)")
    p.add_argument("--split", help="patient-level split CSV (default: a new one)")
    p.add_argument("--task", default="pneumonia", help="loso: single-label task")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--weights", default=None, help="backbone weights for features (default random init)")
    p.add_argument("--features", default="auto", help="auto | backbone | stats")
    p.add_argument("--cache-dir")
    p.add_argument("--model", help="lungs: model folder")
    p.add_argument("--ieee8023", help="lungs: ieee8023 root (with annotations/)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    from training.demo import DemoConfig

    p = add("demo", cmd_demo, "the main job: report, split, shortcut check, train four models, evaluate")
    add_config_args(p, DemoConfig)
    from training.semi.experiment import SemiConfig

    p = add("semi", cmd_semi, "label-efficiency experiment: supervised vs self-training (semi-supervised)")
    add_config_args(p, SemiConfig)

    p = add("serve", cmd_serve, "serve the web app with gunicorn (research tool, not a diagnostic device)")
    p.add_argument("--models-dir", help="models to serve (default $CXRLAB_MODELS_DIR or models)")
    p.add_argument("--compare-dir", help="a `compare` output shown on the comparison page")
    p.add_argument("--bind", help="HOST:PORT or unix:PATH (default $CXRLAB_BIND or 127.0.0.1:8000)")

    _clinical_parser(add)  # issue 6: python -m training clinical {fusion,prognosis,severity}
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors become one clear message and exit code 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except CXRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        # The library checks its arguments with ValueError (a threshold out of range, an
        # unknown name): a user error here, not a crash; -v keeps the traceback for bugs.
        if args.verbose:
            log.exception("ValueError")
        print(f"error: {exc}\n(run with -v to see where it was raised)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
