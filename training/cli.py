"""Command line: builds a config from arguments, calls the library, saves the resolved config.

``cxrlab COMMAND`` (installed) or ``python -m training COMMAND``. Every command's flags are
generated from a config dataclass (:func:`training.flags.add_config_args`): ``train``/
``train-all`` from :class:`~training.config.TrainConfig`, ``pretrain``/``demo``/``semi``/
``clinical`` from their experiment's config, the others from :mod:`training.commands`. Each
command imports the library parts it runs inside its function, so it loads only what it needs.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.commands import COMMANDS  # noqa: E402
from training.config import TrainConfig, config_keys, load_config, split_commas  # noqa: E402
from training.errors import CXRError  # noqa: E402
from training.flags import add_config_args, cli_defaults, config_from_args, save_resolved  # noqa: E402

log = logging.getLogger("training")

DESCRIPTION = ("cxrlab: train, evaluate, compare and serve chest X-ray models with honest, "
               "patient-disjoint numbers. A research tool, not a diagnostic device.")


# ---------------------------------------------------------------- commands with library configs
def _train_config(args: argparse.Namespace):
    """The :class:`TrainConfig` of ``train``/``train-all``: defaults, ``--config``, then flags."""
    overrides = {k: getattr(args, k) for k in config_keys() if getattr(args, k, None) is not None}
    return load_config(args.config, overrides, defaults=cli_defaults(TrainConfig))


def cmd_train(args: argparse.Namespace) -> int:
    from training.engine.fit import train  # loads Keras: only the command that runs pays for it

    model_dir = train(_train_config(args))
    print(f"model: {model_dir}")
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    from training.engine.fit import train_all  # loads Keras: only the command that runs pays for it
    from training.models.registry import FOUR  # loads Keras: only the command that runs pays for it

    archs = tuple(split_commas(args.archs)) if args.archs else FOUR
    for d in train_all(_train_config(args), archs=archs):
        print(f"model: {d}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from training.pretrain import PretrainConfig, pretrain  # loads Keras: only the command that runs pays for it

    cfg = config_from_args(PretrainConfig, args)
    out = pretrain(cfg)
    save_resolved(cfg, out, "pretrain.config.yaml")
    print(f"pretrained model: {out}\n  use it: python -m training train --weights {out} --mode finetune ...")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from training.demo import DemoConfig, run_demo  # loads Keras: only the command that runs pays for it

    cfg = config_from_args(DemoConfig, args)
    run_demo(cfg)
    save_resolved(cfg, cfg.out, "demo.config.yaml")
    return 0


def cmd_semi(args: argparse.Namespace) -> int:
    from training.semi.experiment import SemiConfig, run_experiment  # loads Keras: only the command that runs pays for it

    cfg = config_from_args(SemiConfig, args)
    if not cfg.data:
        raise CXRError("semi needs --data (one or more dataset folders/CSVs)")
    run_experiment(cfg)
    save_resolved(cfg, cfg.out, "semi.config.yaml")
    print(f"semi-supervised results: {Path(cfg.out) / 'results.json'}, {Path(cfg.out) / 'label_efficiency.png'}")
    return 0


# ---------------------------------------------------------------- parser
def version_text() -> str:
    """``cxrlab 0.1.0 (keras 3.x, backend tensorflow, tensorflow 2.x)``: what a bug report needs."""
    from training.models.card import versions  # loads Keras: only --version pays for it

    v = versions()
    tf = f", tensorflow {v['tensorflow']}" if "tensorflow" in v else ""
    return f"cxrlab {v['cxrlab']} (keras {v['keras']}, backend {v['backend']}{tf})"


class _Version(argparse.Action):
    """``--version``: argparse's own action would need the text (and Keras) at every start."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0,
                         help="print the versions of cxrlab, Keras and its backend, and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())  # stdout, as argparse's own version action
        parser.exit()


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML training config (command-line options override it)")
    add_config_args(p, TrainConfig)


def cmd_clinical(args: argparse.Namespace) -> int:
    """Run one clinical experiment (fusion | prognosis | severity) and print its table."""
    from training.clinical.experiments import EXPERIMENTS, ExperimentConfig, summary  # loads Keras: only the command that runs pays for it

    cfg = config_from_args(ExperimentConfig, args)
    if not cfg.data:
        raise CXRError("clinical needs --data (the ieee8023 covid-chestxray folder)")
    results = EXPERIMENTS[args.experiment](cfg)
    save_resolved({"experiment": args.experiment, **dataclasses.asdict(cfg)}, cfg.out)
    print(summary(results))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


#: Commands whose flags come from an experiment's config: ``(module, class, function, help)``.
#: Those modules load Keras, so their flags are added only for the command being run (or for
#: every command when :func:`build_parser` is asked for all): ``cxrlab --help`` stays fast.
EXPERIMENT_COMMANDS: dict[str, tuple[str, str, Callable[[argparse.Namespace], int], str]] = {
    "pretrain": ("training.pretrain", "PretrainConfig", cmd_pretrain,
                 "CXR-domain pretraining on the local data sets (the offline substitute for "
                 "ImageNet weights): supervised on every label they carry"),
    "demo": ("training.demo", "DemoConfig", cmd_demo,
             "the main job: report, split, shortcut check, train four models, evaluate"),
    "semi": ("training.semi.experiment", "SemiConfig", cmd_semi,
             "label-efficiency experiment: supervised vs self-training (semi-supervised)"),
    "clinical": ("training.clinical.experiments", "ExperimentConfig", cmd_clinical,
                 "clinical metadata fusion, prognosis and severity (ieee8023)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``cxrlab`` parser; ``only``: give experiment flags to that command alone (None: all)."""
    parser = argparse.ArgumentParser(prog="cxrlab", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    _train_args(add("train", cmd_train, "train one model"))
    p = add("train-all", cmd_train_all, "train the four backbones on one split with one budget")
    _train_args(p)
    p.add_argument("--archs", help="comma-separated (default resnet50,inception_v3,xception,vgg16)")
    for name, command in COMMANDS.items():
        doc = " ".join((command.__doc__ or "").split()).rstrip(".")
        add_config_args(add(name, functools.partial(_run, command), doc[:1].lower() + doc[1:]), command)
    for name, (module, cls, func, help) in EXPERIMENT_COMMANDS.items():
        p = add(name, func, help)
        if only is None or only == name:
            if name == "clinical":
                p.add_argument("experiment", choices=("fusion", "prognosis", "severity"))
            add_config_args(p, getattr(importlib.import_module(module), cls))
    return parser


def _command_in(argv: list[str]) -> str:
    """The command named in ``argv`` ("" when none is: top-level ``--help``, or an error)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _run(command: type, args: argparse.Namespace) -> int:
    """A :data:`training.commands.COMMANDS` entry: its config from the flags, then its run."""
    return config_from_args(command, args).run()


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors become one clear message and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=_command_in(argv)).parse_args(argv)
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
