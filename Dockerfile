# cxrlab web app: gunicorn serving the models mounted read-only at /srv/cxrlab/models.
#
#   docker build -t cxrlab .
#   docker run --stop-timeout 35 -p 8000:8000 -v "$PWD/models:/srv/cxrlab/models:ro" cxrlab
#   GPU:  docker build -t cxrlab:gpu --build-arg TF_EXTRAS=and-cuda .
#         docker run --gpus all --stop-timeout 35 -p 8000:8000 -v "$PWD/models:/srv/cxrlab/models:ro" cxrlab:gpu
#   Behind TLS (nginx): compose.yaml.
#
# Base: python:3.11-slim-bookworm, with TensorFlow and every other library from
# requirements.txt, pinned: the image runs exactly the versions (and the Python minor) the
# test suite runs. The official tensorflow/tensorflow image brings its own Python and
# TensorFlow build, and pip would install requirements.txt's pins on top of it (a second
# TensorFlow, a bigger image, versions the tests never saw). The GPU variant adds
# TensorFlow's "and-cuda" extra (CUDA and cuDNN as pip wheels, same TensorFlow version);
# the NVIDIA driver comes from the host (NVIDIA Container Toolkit, `docker run --gpus all`).
# BASE_IMAGE may be any Debian/Ubuntu image with python3 (3.11) and python3-venv: the tests
# build a local one from Debian packages where no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# Empty: CPU. "and-cuda": also the CUDA and cuDNN wheels TensorFlow needs on a GPU.
ARG TF_EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2 \
    CXRLAB_BIND=0.0.0.0:8000 \
    CXRLAB_MODELS_DIR=/srv/cxrlab/models \
    CXRLAB_COMPARE_DIR=/srv/cxrlab/out/compare

WORKDIR /srv/cxrlab

# No compilers and no dev requirements: every package installs from a wheel. TensorFlow's
# C++ headers (430 MB, only for compiling custom ops) are dropped.
# A numeric, unprivileged user: the app never needs root and cannot write its code.
# /run/cxrlab holds gunicorn's unix socket when CXRLAB_BIND=unix:/run/cxrlab/gunicorn.sock.
COPY requirements.txt .
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir -r requirements.txt \
    && if [ -n "${TF_EXTRAS}" ]; then \
         pip install --no-cache-dir "tensorflow[${TF_EXTRAS}]==$(sed -n 's/^tensorflow==//p' requirements.txt)"; \
       fi \
    && rm -rf /opt/venv/lib/python3*/site-packages/tensorflow/include \
    && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin cxrlab \
    && mkdir -p /srv/cxrlab/models /run/cxrlab \
    && chown 10001:10001 /run/cxrlab

COPY app/ app/
COPY training/ training/
COPY templates/ templates/
COPY static/ static/
COPY wsgi.py gunicorn.conf.py healthcheck.py ./

USER 10001
EXPOSE 8000

# Standard library only (no curl); follows CXRLAB_BIND, TCP or unix socket.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "healthcheck.py"]

# gunicorn is PID 1: SIGTERM (docker stop) lets running predictions finish for up to
# CXRLAB_GRACEFUL_TIMEOUT (30 s), hence --stop-timeout 35 above (Docker's default is 10 s).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
