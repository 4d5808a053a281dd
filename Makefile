# Everything a fresh machine needs: `make demo` and `make test` create .venv,
# install torch's pinned CPU build, then itpl with its test, plot and export extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.itpl-installed
# Pinned CPU build: a looser torch requirement pulls CUDA wheels (several GB).
TORCH := torch==2.13.0
SOURCES := pyproject.toml CMakeLists.txt $(shell find cpp python -type f 2>/dev/null)

.PHONY: install adb-client arm64-cross demo test test-fast bench clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet ".[test,plot,export]"
	touch $@

demo: install
	$(PY) -m itpl info
	$(PY) -m itpl inspect --model mobilenet_v1
	$(PY) -m itpl profile --model mobilenet_v1 -o demo-out/mobilenet_v1-local.profile.json
	$(PY) -m itpl prune --model mobilenet_v1 --latency-ratio 0.54 --verify --samples 64 \
	    --profile demo-out/mobilenet_v1-local.profile.json -o demo-out/mobilenet_v1-lat54 \
	    --plot demo-out/plots
	$(PY) -m itpl export demo-out/mobilenet_v1-lat54.plan.json -o demo-out/mobilenet_v1-lat54.tflite
	$(PY) -m itpl bench mobilenet_v1 demo-out/mobilenet_v1-lat54.plan.json --batch 1 4 8

# Debian's adb client checks the tests' loopback phone (tests/adb_peer.py).
adb-client:
	command -v adb >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb; } \
	    || { echo "make test needs Debian's adb: apt-get install adb (as root)"; exit 1; }

# Debian's ARM64 cross compiler and qemu-user run the NEON Gram kernel's test
# (tests/test_gram_neon.py) on an x86-64 host; an ARM64 host runs it natively.
arm64-cross:
	[ "$$(uname -m)" = aarch64 ] || { command -v aarch64-linux-gnu-g++ && \
	    { command -v qemu-aarch64 || command -v qemu-aarch64-static; }; } >/dev/null \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	         g++-aarch64-linux-gnu qemu-user; } \
	    || { echo "make test needs g++-aarch64-linux-gnu and qemu-user: apt-get install them (as root)"; exit 1; }

test: install adb-client arm64-cross
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/bench_core.py
	$(PY) bench/bench_prune.py
	$(PY) bench/bench_latency.py
	$(PY) bench/bench_adb.py
	$(PY) bench/quality.py

clean:
	rm -rf $(VENV) build dist demo-out
