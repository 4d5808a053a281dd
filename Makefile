# Everything a fresh machine needs: `make demo` and `make test` create .venv,
# install torch's pinned CPU build, then itpl with its test, plot and export extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.itpl-installed
# Pinned CPU build: a looser torch requirement pulls CUDA wheels (several GB).
TORCH := torch==2.13.0
SOURCES := pyproject.toml CMakeLists.txt $(shell find cpp python -type f 2>/dev/null)

.PHONY: install adb-client arm64-cross demo demo-mobilenet test test-fast bench clean

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet ".[test,plot,export]"
	touch $@

# The user's whole path on a model that has learned something: ResNet-20
# trained on shapes10 (examples/resnet20-shapes10.pt; examples/shapes10.py says
# how it was trained), pruned to 60% of its latency on this CPU with real
# calibration images, verified, fine-tuned, scored, exported (fp32 and int8),
# scored again as exported, and timed beside the unpruned model. Widths are
# multiples of 8, not of this CPU's tile of 16 (the profile warns): at 16-64
# channels a tile of 16 leaves importance almost nothing to move.
DEMO := demo-out
R20 := resnet20 --model-arg num_classes=10
R20_WEIGHTS := examples/resnet20-shapes10.pt
LAT := $(DEMO)/resnet20-lat60

demo: install
	$(PY) -m itpl info
	$(PY) examples/shapes10.py $(DEMO)/shapes10
	$(PY) -m itpl eval $(R20) --weights $(R20_WEIGHTS) --data $(DEMO)/shapes10 --split test \
	    --json -q > $(DEMO)/unpruned.eval.json
	$(PY) -m itpl profile --model $(R20) --round-to 8 -o $(DEMO)/resnet20-local.profile.json
	$(PY) -m itpl prune --model $(R20) --weights $(R20_WEIGHTS) --latency-ratio 0.6 \
	    --profile $(DEMO)/resnet20-local.profile.json --verify \
	    --data $(DEMO)/shapes10/train.pt -o $(LAT) --plot $(DEMO)/plots
	$(PY) -m itpl eval $(LAT).plan.json --data $(DEMO)/shapes10 --split test --json -q \
	    > $(DEMO)/pruned.eval.json
	$(PY) -m itpl finetune $(LAT).plan.json --data $(DEMO)/shapes10 --epochs 2 --lr 0.01 \
	    --warmup-epochs 0.3 -q -o $(LAT)-ft
	$(PY) -m itpl eval $(LAT)-ft.plan.json --data $(DEMO)/shapes10 --split test --json -q \
	    > $(DEMO)/finetuned.eval.json
	$(PY) -m itpl export $(R20) --weights $(R20_WEIGHTS) -o $(DEMO)/resnet20.tflite
	$(PY) -m itpl export $(LAT)-ft.plan.json -o $(LAT).tflite
	$(PY) -m itpl export $(R20) --weights $(R20_WEIGHTS) -o $(DEMO)/resnet20-int8.tflite \
	    --quantize int8 --data $(DEMO)/shapes10/train.pt
	$(PY) -m itpl export $(LAT)-ft.plan.json -o $(LAT)-int8.tflite \
	    --quantize int8 --data $(DEMO)/shapes10/train.pt
	$(PY) -m itpl eval $(DEMO)/resnet20-int8.tflite --data $(DEMO)/shapes10 --split test \
	    --json -q > $(DEMO)/unpruned-int8.eval.json
	$(PY) -m itpl eval $(LAT)-int8.tflite --data $(DEMO)/shapes10 --split test --json -q \
	    > $(DEMO)/finetuned-int8.eval.json
	$(PY) -m itpl bench $(DEMO)/resnet20.tflite $(LAT).tflite $(DEMO)/resnet20-int8.tflite \
	    $(LAT)-int8.tflite --json $(DEMO)/bench.json
	$(PY) examples/demo_report.py $(DEMO)

# The ImageNet-sized run (random weights): MobileNetV1 profiled, pruned to 54%
# of its latency, verified, exported and timed at batch 1, 4 and 8.
demo-mobilenet: install
	$(PY) -m itpl inspect --model mobilenet_v1
	$(PY) -m itpl profile --model mobilenet_v1 -o $(DEMO)/mobilenet_v1-local.profile.json
	$(PY) -m itpl prune --model mobilenet_v1 --latency-ratio 0.54 --verify --samples 64 \
	    --profile $(DEMO)/mobilenet_v1-local.profile.json -o $(DEMO)/mobilenet_v1-lat54
	$(PY) -m itpl export $(DEMO)/mobilenet_v1-lat54.plan.json -o $(DEMO)/mobilenet_v1-lat54.tflite
	$(PY) -m itpl bench mobilenet_v1 $(DEMO)/mobilenet_v1-lat54.plan.json --batch 1 4 8

# Debian's adb client checks the tests' loopback phone (loopback/peer.py).
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
	$(PY) -m pytest -q --durations=20

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install demo-mobilenet
	$(PY) bench/bench_core.py
	$(PY) bench/bench_prune.py
	$(PY) bench/bench_latency.py
	$(PY) bench/bench_adb.py
	$(PY) bench/bench_int8.py --out $(DEMO)/int8-bench
	$(PY) bench/bench_memory.py
	$(PY) bench/quality.py

clean:
	rm -rf $(VENV) build dist demo-out
