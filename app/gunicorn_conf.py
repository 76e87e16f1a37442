"""gunicorn settings for cxrlab (every value can be overridden from the environment).

CPU: keep one worker. TensorFlow already spreads one prediction over every core, and each
worker holds its own copy of all four models in memory; more workers only add memory and
contention. GPU: one worker per GPU (each worker would otherwise allocate the whole card).
Concurrency comes from threads; ``CXRLAB_MAX_INFLIGHT`` bounds concurrent predictions
(excess requests get 503 at once instead of queueing into timeouts).
"""
import os

# Loopback by default: expose the app through a reverse proxy (TLS), not directly.
# The Docker image sets CXRLAB_BIND=0.0.0.0:8000 because the container is its own host.
bind = os.environ.get("CXRLAB_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"

# Models are loaded in each worker after the fork: TensorFlow is not fork-safe.
preload_app = False

workers = int(os.environ.get("CXRLAB_WORKERS", "1"))
# Threads let a health check or an upload page through while a prediction runs, and let
# the in-flight limiter answer 503 instead of letting requests pile up in the socket.
worker_class = "gthread"
threads = int(os.environ.get("CXRLAB_THREADS", "4"))

# The worker heartbeat: a worker silent this long is killed and replaced. Loading four
# backbones and the first (traced) prediction can take a minute on a CPU. It does not bound a
# request: a gthread worker's main loop keeps beating while a request thread runs; the app's
# CXRLAB_REQUEST_TIMEOUT (app.limiter.Deadline) does that, between the stages of a prediction.
timeout = int(os.environ.get("CXRLAB_TIMEOUT", "120"))
# Let running predictions finish on SIGTERM (deploys, docker stop) before workers die.
graceful_timeout = int(os.environ.get("CXRLAB_GRACEFUL_TIMEOUT", "30"))
keepalive = 5

# Uploads are bounded by CXRLAB_MAX_UPLOAD_MB in the app; headers stay small.
limit_request_line = 8190
limit_request_fields = 100

accesslog = "-"   # access log holds paths and status codes only, never upload content
errorlog = "-"
loglevel = os.environ.get("CXRLAB_LOG_LEVEL", "info")


def post_worker_init(worker) -> None:
    """Say the address once the app can answer: after this worker loaded every model (``make
    demo`` and ``cxrlab serve`` print no URL before that; with several workers, each says it)."""
    state = getattr(worker.wsgi, "extensions", {}).get("cxrlab")
    if state is None:  # gunicorn's error app (--reload after a failed load): nothing is served
        return
    bank = state["bank"]
    where = ", ".join(b if b.startswith("unix:") else f"http://{b}" for b in worker.cfg.bind)
    more = " (a demo is training: its other models appear as they finish)" if state.get("watch") else ""
    print(f"serving {len(bank)} models at {where}{more} (Ctrl-C to stop)", flush=True)
