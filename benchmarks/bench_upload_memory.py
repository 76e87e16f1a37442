"""Upload memory benchmark: peak RSS added and time of one upload's decode + gate + preprocessing.

    python benchmarks/bench_upload_memory.py --json out/bench_upload_memory.json
    python benchmarks/bench_upload_memory.py --ref 303a5e3 --repeats 3   # and the same on a commit

Each case runs in a FRESH subprocess that imports what a request runs before the models
(``training.gate.checks.inspect`` + ``image_reasons``, then ``training.preprocess.preprocess`` at
224 px), warms up on a small file of the same format, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``), then times one call and reports VmHWM minus the RSS before it
(where clear_refs is not writable: the ``ru_maxrss`` delta). Cases: PNG RGB, 1-bit and 16-bit,
an RGB JPEG and an uncompressed 16-bit DICOM just under the pixel budget (``--max-pixels``,
default ``training.preprocess.DEFAULT_MAX_PIXELS``), the issue's ~660-byte RLE DICOM declaring
40000 x 40000 pixels, and the issue's 9400 x 9400 RGB PNG bomb. ``--ref`` also runs every case
on the ``training`` package of a git commit (``git archive``), for a before/after. Targets: the
RLE bomb refused in < 100 ms with < 50 MB added.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.proc_memory import reset_peak, status_kb  # noqa: E402  (after the path)

TARGET_BOMB = {"ms": 100.0, "mb": 50.0}
SMALL = 512  # side of the warm-up images


# ------------------------------------------------------------------ the files

def _smooth(side: int, mode: str):
    """A chest-like image upscaled to ``side`` x ``side`` (smooth: compresses like an export)."""
    from PIL import Image

    from tests.helpers.images import chest_like

    base = Image.fromarray(chest_like(512, 512)).resize((side, side), Image.Resampling.BILINEAR)
    if mode == "I;16":
        import numpy as np

        return Image.fromarray(np.asarray(base).astype(np.uint16) * 257)
    return base.convert(mode)


def _encoded(img, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 90}))
    return buffer.getvalue()


def make_case(case: str, max_pixels: int, small: bool = False) -> tuple[bytes, str]:
    """``(file bytes, upload name)`` of ``case``; ``small``: its warm-up twin (same format)."""
    from tests.helpers import hostile

    side = SMALL if small else int(max_pixels ** 0.5) - 1  # just under the budget
    if case in ("png_rgb", "png_16bit", "jpeg_rgb"):
        mode, fmt = {"png_rgb": ("RGB", "PNG"), "png_16bit": ("I;16", "PNG"),
                     "jpeg_rgb": ("RGB", "JPEG")}[case]
        return _encoded(_smooth(side, mode), fmt), f"upload.{fmt.lower()}"
    if case == "png_1bit":
        return hostile.one_bit_png(side, side), "upload.png"
    if case == "dicom_16bit":
        return hostile.uncompressed_dicom(side, side), "upload.dcm"
    if case == "rle_bomb":
        return (hostile.rle_bomb_dicom(SMALL, SMALL) if small else hostile.rle_bomb_dicom()), "bomb.dcm"
    if case == "png_bomb_9400":
        return hostile.png_bomb(SMALL * SMALL if small else 9400 * 9400, colour_type=2), "bomb.png"
    raise ValueError(f"unknown case {case!r}; known: {', '.join(CASES)}")


CASES = ("png_rgb", "png_1bit", "png_16bit", "jpeg_rgb", "dicom_16bit", "rle_bomb", "png_bomb_9400")


# ------------------------------------------------------------------ the measured process

def child(file: Path, name: str, warmup: Path, max_pixels: int | None) -> dict[str, Any]:
    """One upload through the decode path, after a warm-up: the added peak RSS and the time."""
    import gc

    from training.errors import ImageDecodeError
    from training.gate.checks import image_reasons, inspect
    from training.preprocess import PreprocessConfig, preprocess

    budget = {} if max_pixels is None else {"max_pixels": max_pixels}

    def request(data: bytes) -> str:
        try:
            facts = inspect(data, name, **budget)
        except ImageDecodeError:
            return "refused (422)"
        image_reasons(facts)
        preprocess(facts.decoded, PreprocessConfig(size=224))
        return "decoded"

    request(warmup.read_bytes())
    data = file.read_bytes()
    gc.collect()
    hwm_reset = reset_peak()
    rss_before, maxrss_before = status_kb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    outcome = request(data)
    seconds = time.perf_counter() - start
    added_kb = (status_kb("VmHWM") - rss_before if hwm_reset
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before)
    return {"outcome": outcome, "ms": round(seconds * 1000, 2), "added_mb": round(added_kb / 1024, 1),
            "method": "VmHWM after clear_refs - VmRSS before" if hwm_reset else "ru_maxrss delta"}


def measure(file: Path, name: str, warmup: Path, max_pixels: int | None,
            package: Path | None) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter (``package``: import ``training`` from there)."""
    cmd = [sys.executable, __file__, "--child", str(file), name, str(warmup),
           str(max_pixels or 0), str(package or "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=600)
    if proc.returncode != 0:
        return {"outcome": f"crashed ({proc.returncode})", "ms": None, "added_mb": None,
                "stderr": proc.stderr[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the run

def export_ref(ref: str, into: Path) -> Path:
    """The ``training`` package of commit ``ref``, unpacked into ``into`` (for the before/after)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "training"], check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run(cases: list[str], max_pixels: int, repeats: int, ref: str | None, tmp: Path) -> dict[str, Any]:
    """Every case on the working tree (and on ``ref``): the median of ``repeats`` fresh runs."""
    from training.preprocess import DEFAULT_MAX_PIXELS

    # passed on only when not the default, and only to the working tree (older code has no budget)
    passed = None if max_pixels == DEFAULT_MAX_PIXELS else max_pixels
    versions = {"now": None} | ({ref: export_ref(ref, tmp / "ref")} if ref else {})
    rows = []
    for case in cases:
        (tmp / case).mkdir()
        data, name = make_case(case, max_pixels)
        file, warm = tmp / case / name, tmp / case / f"warm-{name}"
        file.write_bytes(data)
        warm.write_bytes(make_case(case, max_pixels, small=True)[0])
        row: dict[str, Any] = {"case": case, "bytes": len(data)}
        for version, package in versions.items():
            runs = [measure(file, name, warm, None if package else passed, package)
                    for _ in range(repeats)]
            row[version] = _median(runs)
            print(f"{case:14s} {version:8s} {row[version]['outcome']:14s} "
                  f"{row[version]['added_mb']} MB {row[version]['ms']} ms", flush=True)
        rows.append(row)
    return {"meta": _meta(max_pixels, repeats, ref), "rows": rows, "checks": _checks(rows)}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in runs if r["ms"] is not None]
    if not done:
        return runs[0]
    return {**done[0], "ms": statistics.median(r["ms"] for r in done),
            "added_mb": statistics.median(r["added_mb"] for r in done), "runs": len(done)}


def _checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    bomb = next((r["now"] for r in rows if r["case"] == "rle_bomb"), None)
    if bomb is None or bomb["ms"] is None:
        return {}
    return {"rle_bomb_refused": bomb["outcome"].startswith("refused"),
            "rle_bomb_ms_target_met": bomb["ms"] < TARGET_BOMB["ms"],
            "rle_bomb_mb_target_met": bomb["added_mb"] < TARGET_BOMB["mb"]}


def _meta(max_pixels: int, repeats: int, ref: str | None) -> dict[str, Any]:
    import numpy
    import PIL
    import pydicom

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "numpy": numpy.__version__, "pillow": PIL.__version__, "pydicom": pydicom.__version__,
            "max_pixels": max_pixels, "repeats": repeats, "ref": ref,
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def table(result: dict[str, Any]) -> str:
    """The markdown table of BENCHMARKS.md."""
    versions = [v for v in result["rows"][0] if v not in ("case", "bytes")]
    head = "| case | file | " + " | ".join(f"{v}: outcome | {v}: added peak RSS | {v}: time"
                                           for v in versions) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(versions))]
    for r in result["rows"]:
        cells = [r["case"], _size(r["bytes"])]
        for v in versions:
            cells += [r[v]["outcome"], f"{r[v]['added_mb']} MB", f"{r[v]['ms']} ms"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1e3:.0f} kB" if n < 10_000_000 else f"{n / 1e6:.0f} MB"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        file, name, warm, max_pixels, package = sys.argv[2:7]
        if package:
            sys.path.insert(0, package)
        print(json.dumps(child(Path(file), name, Path(warm), int(max_pixels) or None)))
        return
    from training.preprocess import DEFAULT_MAX_PIXELS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="the pixel budget the near-limit files sit just under (and is passed on)")
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per case (median)")
    ap.add_argument("--ref", help="also run every case on this commit's training package")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrlab-bench-upload-") as tmp:
        result = run(args.cases.split(","), args.max_pixels, args.repeats, args.ref, Path(tmp))
    print(table(result))
    print(json.dumps(result["checks"]))
    if args.json:
        from training.io import write_json

        print(f"wrote {write_json(args.json, result)}")


if __name__ == "__main__":
    main()
