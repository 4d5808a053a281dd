# Everything a fresh machine needs: `make demo` and `make test` create .venv,
# install torch's pinned CPU build, then itpl with its test, plot and export extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.itpl-installed
# Pinned CPU build: a looser torch requirement pulls CUDA wheels (several GB).
TORCH := torch==2.13.0
SOURCES := pyproject.toml CMakeLists.txt $(shell find cpp python -type f 2>/dev/null)

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet ".[test,plot,export]"
	touch $@

demo: install
	$(PY) -m itpl info
	$(PY) -m itpl inspect --model mobilenet_v1
	$(PY) -m itpl prune --model mobilenet_v1 --flops 283M --samples 64 \
	    -o demo-out/mobilenet_v1-283M --plot demo-out/plots

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/bench_core.py
	$(PY) bench/bench_prune.py

clean:
	rm -rf $(VENV) build dist demo-out
