# Two commands do all set-up from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: run test lint bench screenshots clean

$(STAMP): pyproject.toml resources/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -c resources/constraints.txt -e '.[test,zoo]'
	touch $(STAMP)

# transformers 4.x beside .venv, not in it: the hf-key-mapping export is loaded by it in a subprocess
TF4 := $(VENV)/transformers4
$(TF4)/.installed: $(STAMP) resources/constraints-transformers4.txt
	rm -rf $(TF4)
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --target $(TF4) -r resources/constraints-transformers4.txt
	touch $@

run: $(STAMP)
	$(VENV)/bin/spp-gui $(ARGS)

test: $(STAMP) $(TF4)/.installed
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check spp_gui tests benchmarks resources
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy spp_gui

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

screenshots: $(STAMP)
	$(PY) resources/take_screenshots.py

clean:
	rm -rf $(VENV) build dist *.egg-info
