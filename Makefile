# cxrlab — Quickstart: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DATA   ?=
OUT    ?= demo-output
PORT   ?= 8000

.PHONY: demo test venv dev clean serve

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## make demo [DATA=PATH ...] [OUT=demo-output] [PORT=8000]: report, split, train the four
## models, evaluate on the held-back test part, then serve the app on 127.0.0.1.
demo: $(VENV)/.installed
	$(PY) -m training demo $(foreach d,$(DATA),--data $(d)) --out $(OUT)
	@echo "cxrlab web app: http://127.0.0.1:$(PORT)  (models: $(OUT)/models; Ctrl-C to stop)"
	CXRLAB_MODELS_DIR=$(OUT)/models CXRLAB_COMPARE_DIR=$(OUT)/compare CXRLAB_BIND=127.0.0.1:$(PORT) \
		$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

## make test: the whole pytest suite (CPU only).
test: $(VENV)/.installed-dev
	$(PY) -m pytest

clean:
	rm -rf $(OUT) .pytest_cache
