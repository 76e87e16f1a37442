# cxrlab — Quickstart: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DATA   ?=
OUT    ?= demo-output
PORT   ?= 8000

.PHONY: demo test venv dev clean serve

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	# the `cxrlab` command (editable: the checkout stays the code that runs)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## make demo [DATA=PATH ...] [OUT=demo-output] [PORT=8000]: report, split, train the four
## models, evaluate on the held-back test part, then serve the app on 127.0.0.1.
demo: $(VENV)/.installed
	$(VENV)/bin/cxrlab demo $(foreach d,$(DATA),--data $(d)) --out $(OUT)
	@echo "cxrlab web app: http://127.0.0.1:$(PORT)  (models: $(OUT)/models; Ctrl-C to stop)"
	$(VENV)/bin/cxrlab serve --models-dir $(OUT)/models --compare-dir $(OUT)/compare --bind 127.0.0.1:$(PORT)

## make test: the linter (ruff, settings in pyproject.toml), then the whole pytest suite (CPU only).
test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(OUT) .pytest_cache
