# cxrlab — Quickstart: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DATA   ?=
OUT    ?= demo-output
PORT   ?= 8000

.PHONY: demo test venv dev clean serve

# Silent pip for minutes looks like a hang: each step is said, and the total time. Nothing is
# printed when everything is already installed (the rule does not run).
# The `cxrlab` command is installed editable: the checkout stays the code that runs.
$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "installing dependencies (first run: ~2 GB, several minutes)..."
	@start=$$(date +%s) && \
	{ test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); } && \
	echo "  [1/3] pip" && $(PIP) install -q --upgrade pip && \
	echo "  [2/3] requirements.txt (TensorFlow, Keras, Flask, ...: the ~2 GB)" && \
	$(PIP) install -q -r requirements.txt && \
	echo "  [3/3] the cxrlab command" && $(PIP) install -q --no-deps --no-build-isolation -e . && \
	echo "dependencies installed in $$(( $$(date +%s) - start )) s"
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# The app prints its address itself once the models are loaded (app/gunicorn_conf.py).
SERVE = $(VENV)/bin/cxrlab serve --models-dir $(OUT)/models --compare-dir $(OUT)/compare --bind 127.0.0.1:$(PORT)

## make demo [DATA=PATH ...] [OUT=demo-output] [PORT=8000]: report, split, train the four
## models (a second run reuses those trained with the same config, data and split), each
## evaluated as soon as it is trained. --serve: the app (the same `cxrlab serve` as make serve)
## starts on 127.0.0.1 once the first model is ready, shows the others as they finish, and
## keeps serving after the run (Ctrl-C stops both).
demo: $(VENV)/.installed
	$(VENV)/bin/cxrlab demo $(foreach d,$(DATA),--data $(d)) --out $(OUT) --serve --bind 127.0.0.1:$(PORT)

## make serve [OUT=demo-output] [PORT=8000]: serve the last demo's models and comparison (no training).
serve: $(VENV)/.installed
	@test -d $(OUT)/models || { echo "no demo models in $(OUT)/models. What to do: run make demo first (or pass OUT=the demo's folder)" >&2; exit 2; }
	$(SERVE)

## make test: the linter (ruff, settings in pyproject.toml), then the whole pytest suite (CPU only).
test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(OUT) .pytest_cache
