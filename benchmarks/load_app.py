"""Load test: gunicorn with the four backbones, N concurrent clients for a fixed time, on loopback.

    python benchmarks/load_app.py --clients 8 --seconds 30 --json out/load_app.json

Starts ``gunicorn -c gunicorn.conf.py wsgi:app`` (the real config: 1 worker, gthread) with
``CXRLAB_MODELS_DIR`` = random-weight ResNet50/InceptionV3/Xception/VGG16 (built as in
bench_app.py; kept with --models-dir), on a free 127.0.0.1 port. Each client thread posts one
X-ray to ``/api/predict`` (``--heatmaps`` adds Grad-CAM) in a loop until the time is up.
Counts status codes: 503 is the in-flight limiter refusing on purpose (CXRLAB_MAX_INFLIGHT);
anything else but 200 is an error (clients back off 1 s after a 503). gunicorn is always stopped, and its log kept (--log).
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.bench_app import machine, make_models, sample_upload
from tests.app.servers import gunicorn_server

BACKOFF_S = 1.0


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client_loop(port: int, path: str, body: bytes, ctype: str, deadline: float,
                out: list[tuple[float, int | str]]) -> None:
    """Post until ``deadline`` over one keep-alive connection; record (seconds, status)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": ctype})
            rv = conn.getresponse()
            rv.read()
            status: int | str = rv.status
            if status == 503:
                # A polite client backs off (Retry-After says 5 s; 1 s keeps the pressure on)
                # instead of spinning on refusals and stealing the CPU from the predictions.
                time.sleep(min(float(rv.getheader("Retry-After") or 1), BACKOFF_S))
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        out.append((time.perf_counter() - start, status))
    conn.close()


def load(url: str, clients: int, seconds: float, heatmaps: bool, upload: str | None) -> dict:
    data, name = sample_upload(upload)
    body, ctype = multipart(data, name)
    port = int(url.rsplit(":", 1)[1])
    path = "/api/predict" + ("?heatmaps=1" if heatmaps else "")
    records: list[tuple[float, int | str]] = []
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(port, path, body, ctype, deadline, records))
               for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    counts = collections.Counter(str(s) for _, s in records)
    ok_ms = np.array([t for t, s in records if s == 200]) * 1000
    pct = {f"p{q}_ms": round(float(np.percentile(ok_ms, q)), 1) for q in (50, 90, 95, 99)} if len(ok_ms) else {}
    errors = {k: v for k, v in counts.items() if k not in ("200", "503")}
    return {"path": path, "clients": clients, "seconds": round(wall, 1), "requests": len(records),
            "status": dict(counts), "errors": errors, "ok_per_s": round(len(ok_ms) / wall, 2),
            "all_per_s": round(len(records) / wall, 2), "ok_latency": pct,
            "upload": {"name": name, "bytes": len(data)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", help="random-weight models (built if missing); default: a temp folder")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--heatmaps", action="store_true", help="request Grad-CAM heatmaps too")
    ap.add_argument("--upload", help="image to post (default: a synthetic 2048x1792 JPEG)")
    ap.add_argument("--log", help="keep gunicorn's log here (default: a temp file)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxrlab-load-") as tmp:
        models_dir = make_models(Path(args.models_dir or Path(tmp) / "models"))
        log_path = Path(args.log or Path(tmp) / "gunicorn.log")
        before = machine()
        with gunicorn_server(models_dir, log_path, timeout=300) as url:   # stopped on exit, always
            result = load(url, args.clients, args.seconds, args.heatmaps, args.upload)
        result["machine"] = {**before, "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
        result["gunicorn"] = {k: os.environ.get(k) for k in ("CXRLAB_THREADS", "CXRLAB_MAX_INFLIGHT",
                                                              "CXRLAB_WORKERS")}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["errors"]:
        sys.exit(f"errors other than deliberate 503s: {result['errors']}")


if __name__ == "__main__":
    main()
