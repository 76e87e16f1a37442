"""Hostile uploads against a real gunicorn server: status, time and memory added per request.

    python benchmarks/bench_hostile_http.py --json out/bench_hostile_http.json

Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` (one worker, as the image runs it) on a
loopback port with the two tiny test models, warms it up with one ordinary upload, then for
each hostile file of ``tests/helpers/hostile.py`` resets the worker's peak-RSS mark
(``/proc/<pid>/clear_refs``), POSTs it to ``/api/predict`` and reports the HTTP status, the
client-side wall time and the worker's VmHWM minus its RSS before the request. Target
(issue 22): the 662-byte RLE DICOM declaring 40000 x 40000 pixels refused (422) in < 100 ms
with < 50 MB added.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.proc_memory import reset_peak, status_kb  # noqa: E402  (after the path)

TARGET = {"ms": 100.0, "mb": 50.0}


def cases() -> dict[str, tuple[bytes, str]]:
    """Hostile files and an ordinary one, as ``name -> (bytes, upload file name)``."""
    from tests.helpers import hostile
    from tests.helpers.images import chest_like, png_bytes

    return {
        "rle_bomb_40000": (hostile.rle_bomb_dicom(), "scan.dcm"),
        "png_bomb_9400_rgb": (hostile.png_bomb(9400 * 9400, colour_type=2), "scan.png"),
        "one_bit_png_9400": (hostile.one_bit_png(9400, 9400), "scan.png"),
        "many_frames_dicom": (hostile.many_frames_dicom(), "scan.dcm"),
        "deflate_bomb_dicom": (hostile.deflate_bomb_dicom(), "scan.dcm"),
        "codestream_bomb_dicom": (hostile.codestream_bomb_dicom(), "scan.dcm"),
        "ordinary_png_512": (png_bytes(chest_like(512, 512)), "scan.png"),
    }


def post(url: str, data: bytes, name: str) -> tuple[int, float]:
    """``(status, seconds)`` of one multipart POST to ``/api/predict``."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/api/predict", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as rv:
            rv.read()
            status = rv.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - start


def worker_pid(parent: int) -> int:
    """The first child of ``parent`` (gunicorn's master of this process; its one worker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return int(children[0])


def measure(url: str, pid: int, data: bytes, name: str, repeats: int) -> dict:
    times, added = [], []
    for _ in range(repeats):
        reset_peak(pid)  # VmHWM := current RSS
        before = status_kb("VmRSS", pid)
        status, seconds = post(url, data, name)
        times.append(seconds * 1000)
        added.append((status_kb("VmHWM", pid) - before) / 1024)
    return {"status": status, "bytes": len(data), "ms": round(statistics.median(times), 1),
            "added_mb": round(statistics.median(added), 1)}


def run(repeats: int) -> dict:
    from tests.app.servers import gunicorn_server
    from tests.app.tiny_models import write_models

    with tempfile.TemporaryDirectory(prefix="cxrlab-bench-hostile-") as tmp:
        models = write_models(Path(tmp) / "models", gated=False)
        files = cases()
        with gunicorn_server(models, Path(tmp) / "gunicorn.log") as url:
            master = worker_pid(os.getpid())  # our child: gunicorn's master
            pid = worker_pid(master)
            post(url, *files["ordinary_png_512"])  # warm-up: graphs traced, caches filled
            rows = {name: measure(url, pid, data, fname, repeats)
                    for name, (data, fname) in files.items()}
    bomb = rows["rle_bomb_40000"]
    checks = {"rle_bomb_refused": bomb["status"] == 422, "rle_bomb_ms": bomb["ms"] < TARGET["ms"],
              "rle_bomb_mb": bomb["added_mb"] < TARGET["mb"],
              "no_5xx": all(r["status"] < 500 for r in rows.values())}
    return {"rows": rows, "checks": checks, "repeats": repeats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="requests per case (median)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    result = run(args.repeats)
    print("| case | file | status | time (ms) | added peak RSS (MB) |\n|---|---|---|---|---|")
    for name, r in result["rows"].items():
        print(f"| {name} | {r['bytes']:,} B | {r['status']} | {r['ms']} | {r['added_mb']} |")
    print(json.dumps(result["checks"]))
    if args.json:
        from training.io import write_json

        write_json(args.json, result)
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
