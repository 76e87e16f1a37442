"""Fuzz campaign over the upload path, full size (issue 22, deliverable 2; CI size:
tests/training/test_fuzz_decode.py and tests/app/test_fuzz_api.py).

    python benchmarks/bench_fuzz.py --decode 3000 --api 2000 --json out/bench_fuzz.json
    python benchmarks/bench_fuzz.py --decode 500 --api 0 --save out/fuzz-cases   # quick, keep failures

Seeds: real JPEG/PNG X-rays from ``--data`` (default ../shared/data; generated images without
it), generated DICOMs (uncompressed 8/16-bit MONOCHROME1/2, RGB, multi-frame, implicit VR,
deflated, RLE, JPEG baseline, JPEG-LS, JPEG 2000, no preamble) and the known hostile files.
Each target gets its seeds as they are, then N mutants (tests/helpers/mutate.py), each case
timed, its peak memory measured (resident high-water mark, reset per case) and classified:
accepted / refused with a clear error / crash / slow / memory (over
``BYTES_PER_BUDGET_PIXEL`` x ``--max-pixels`` + slack). Targets:

* ``decode``: ``decode_image`` + ``preprocess``, then the gate's ``inspect`` + ``image_reasons``;
* ``api``: ``POST /api/predict?heatmaps=1`` through Flask's test client with two tiny models
  (tests/app/tiny_models.py) and ``MAX_PIXELS`` = ``--max-pixels``;
* ``sr`` (``--sr N``): ``POST /api/report?format=sr`` with the DICOM seeds only (the report copies
  the upload's tags); ``pdf`` (``--pdf N``): ``POST /api/report?format=pdf``, every seed.

Each target stops starting cases after ``--seconds``. Prints markdown tables; exits 1 if any
case crashed, went over the memory bound or was slow.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import fuzz  # noqa: E402
from tests.helpers.fuzz_seeds import SUFFIX, Seed, all_seeds  # noqa: E402
from tests.helpers.proc_memory import status_kb  # noqa: E402


def machine() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def rss_mib() -> float:
    """Resident memory now (ru_maxrss is no use here: the probe resets the high-water mark per case)."""
    try:
        return status_kb("VmRSS") / 1024
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def api_app(max_pixels: int, workdir: Path):
    """The app over two tiny models (one gated and calibrated), as the app tests serve it."""
    from app import create_app
    from app.model_bank import ModelBank
    from tests.app.tiny_models import write_models

    bank = ModelBank.from_dir(write_models(workdir / "models"), device="cpu")
    return create_app({"MODEL_BANK": bank, "SECRET_KEY": "bench-fuzz", "TESTING": True,
                       "COMPARE_DIR": str(workdir / "no-compare"), "MAX_PIXELS": max_pixels})


def save_failures(report: fuzz.Report, folder: Path) -> None:
    """Each failing case's bytes and description, to reproduce it (never committed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cases.txt", "a", encoding="utf-8") as log:
        for r in report.failures():
            name = f"{report.target.strip('/').replace('/', '_').replace('?', '_')}-case{r.case.index}"
            path = folder / f"{name}.{SUFFIX[r.case.seed.fmt]}"
            path.write_bytes(r.case.mutant.data)
            log.write(f"{path.name}\t{r.outcome.value}\t{r.case.describe()}\t{r.detail.splitlines()[0]}\n")


def as_json(report: fuzz.Report) -> dict[str, Any]:
    mem, slow = report.worst("added"), report.worst("seconds")
    return {
        "target": report.target, "planned": report.planned, "ran": len(report.results),
        "seconds": round(report.seconds, 1), "max_pixels": report.max_pixels,
        "memory_bound_mib": round(report.bound / 2**20, 1), "memory_method": report.memory_method,
        "counts": {f"{fmt}/{o.value}": n for (fmt, o), n in sorted(report.counts().items())},
        "max_added_mib": round(mem.added / 2**20, 1) if mem else None,
        "max_added_case": mem.case.describe() if mem else None,
        "slowest_s": round(slow.seconds, 3) if slow else None,
        "slowest_case": slow.case.describe() if slow else None,
        "failures": [{"outcome": r.outcome.value, "case": r.case.describe(), "seconds": round(r.seconds, 3),
                      "added_mib": round(r.added / 2**20, 1), "detail": r.detail} for r in report.failures()],
    }


def campaign(name: str, seeds: list[Seed], target: fuzz.Target, n: int, args) -> fuzz.Report:
    before = rss_mib()
    report = fuzz.run_campaign(seeds, target, n, name=name, campaign_seed=args.seed,
                               max_pixels=args.max_pixels, slow_s=args.slow, deadline_s=args.seconds)
    print(f"\n{report.table()}\n\n{report.summary()}\n"
          f"resident memory {before:.0f} MiB before the campaign, {rss_mib():.0f} MiB after", flush=True)
    if args.save:
        save_failures(report, Path(args.save))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode", type=int, default=3000, help="mutants through decode + gate (0: skip)")
    ap.add_argument("--api", type=int, default=2000, help="mutants through /api/predict (0: skip)")
    ap.add_argument("--sr", type=int, default=0, help="DICOM mutants through /api/report?format=sr")
    ap.add_argument("--pdf", type=int, default=0, help="mutants through /api/report?format=pdf")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="real seeds' root")
    ap.add_argument("--max-pixels", type=int, default=fuzz.FUZZ_MAX_PIXELS)
    ap.add_argument("--seconds", type=float, default=900.0, help="time limit per target")
    ap.add_argument("--slow", type=float, default=3.0, help="a case over this many seconds is slow")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed (case i: Random(f'{seed}:{i}'))")
    ap.add_argument("--save", default=None, help="folder for the failing cases' files")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    # Thousands of refusals: keep the decoders' and the audit log's lines out of the output.
    for name in ("pydicom", "cxrlab.audit", "app"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    data = Path(args.data)
    seeds = all_seeds(data if data.is_dir() else None)
    real = sum(s.name.startswith(("ieee8023/", "kermany/")) for s in seeds)
    print(f"{len(seeds)} seeds ({real} real files from {data}), budget {args.max_pixels:,} px, "
          f"memory bound {fuzz.memory_bound(args.max_pixels) / 2**20:.0f} MiB, machine {machine()}", flush=True)
    reports = []
    if args.decode:
        reports.append(campaign("decode + gate", seeds, fuzz.decode_target(args.max_pixels), args.decode, args))
    if args.api or args.sr or args.pdf:
        with tempfile.TemporaryDirectory() as tmp:
            app = api_app(args.max_pixels, Path(tmp))
            if args.api:
                reports.append(campaign("/api/predict", seeds, fuzz.api_target(app, "/api/predict?heatmaps=1"),
                                        args.api, args))
            if args.sr:
                dicoms = [s for s in seeds if s.fmt == "dicom"]
                reports.append(campaign("/api/report?format=sr", dicoms,
                                        fuzz.api_target(app, "/api/report?format=sr", report=True), args.sr, args))
            if args.pdf:
                reports.append(campaign("/api/report?format=pdf", seeds,
                                        fuzz.api_target(app, "/api/report?format=pdf", report=True), args.pdf, args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine(), "argv": sys.argv[1:],
                                               "reports": [as_json(r) for r in reports]}, indent=2))
    return 1 if any(r.failures() for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
