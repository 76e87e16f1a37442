# cxrlab web app. CPU:  docker build -t cxrlab .
# GPU:  docker build -t cxrlab:gpu --build-arg TF_IMAGE=tensorflow/tensorflow:2.21.0-gpu .
#       docker run --gpus all -p 8000:8000 -v "$PWD/models:/srv/cxrlab/models:ro" cxrlab:gpu
# Models: mount them read-only at /srv/cxrlab/models (as above; preferred, the image stays
# small and models change without a rebuild), or bake them in at build time with
# --build-arg MODELS_DIR=models (a folder of models/<name>/{card.json,model.keras}).
ARG TF_IMAGE=tensorflow/tensorflow:2.21.0
FROM ${TF_IMAGE}

ARG MODELS_DIR=models

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CXRLAB_BIND=0.0.0.0:8000 \
    CXRLAB_MODELS_DIR=/srv/cxrlab/models \
    CXRLAB_COMPARE_DIR=/srv/cxrlab/out/compare

WORKDIR /srv/cxrlab

COPY requirements.txt .
# A numeric, unprivileged user: the app never needs root (and cannot write its code).
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin cxrlab

COPY app/ app/
COPY training/ training/
COPY templates/ templates/
COPY static/ static/
COPY wsgi.py gunicorn.conf.py ./
COPY --chown=10001:10001 ${MODELS_DIR}/ models/

USER 10001
EXPOSE 8000

# No curl in the image: the standard library does the check (port 8000, as CXRLAB_BIND).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
