# vitedge: make demo (the main job on the shipped model) and make test are all a new user needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two layers in one venv: `make demo` needs core + export + plot; `make test` adds the dev tools.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# MediaPipe Tasks in a venv of its own (its protobuf pin conflicts with TensorFlow's): the test
# that loads exported .tflite files with MediaPipe's ImageClassifier runs its script there.
MEDIAPIPE_VENV ?= .venv-mediapipe
MEDIAPIPE_STAMP := $(MEDIAPIPE_VENV)/.installed
FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DATA ?= data/fashion-mnist
RESULTS ?= results
MODEL ?= models/fmnist-vit.keras

ARTIFACTS ?= out
STEM ?= $(basename $(notdir $(MODEL)))

.PHONY: install install-dev test test-all lint demo fmnist fmnist-deb sshd-deb data model clean bench bench-startup bench-photo pi-check bench-int8 bench-export mediapipe

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[export,plot]"
	@touch $(STAMP)

# After $(STAMP), so a changed pyproject.toml re-installs both layers in order.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[export,plot,dev]"
	@touch $(DEV_STAMP)

mediapipe: $(MEDIAPIPE_STAMP)

$(MEDIAPIPE_STAMP):
	@test -d $(MEDIAPIPE_VENV) || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/pip install --quiet "mediapipe>=0.10.14" numpy
	@touch $(MEDIAPIPE_STAMP)

# Fashion-MNIST's four IDX files, checked against vitedge's recorded checksums: Debian's package
# when installed, else downloaded once into the user cache (~/.cache/vitedge; no root needed).
fmnist: $(STAMP)
	$(BIN)/vitedge data fashion-mnist --download-only

# Optional shortcut on Debian (needs root): the same files from Debian's package.
fmnist-deb:
	@test -f $(FMNIST_DEB) || { \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; }

# OpenSSH's server for tests/test_bench_device.py (`bench --device ssh://...`): the tests start their
# own sshd on 127.0.0.1 with throw-away keys; this only puts /usr/sbin/sshd on the machine (root or
# sudo; without either the SSH tests skip and say why).
SSHD := /usr/sbin/sshd
sshd-deb:
	@test -x $(SSHD) || { \
	  echo "installing Debian package openssh-server (for the bench --device tests)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "not root and no sudo: the bench --device tests will skip"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssh-server openssh-client; }

# Fashion-MNIST as an ImageFolder tree (PNG files): $(DATA)/train and $(DATA)/test.
data: install
	@test -d $(DATA)/test || $(BIN)/vitedge data fashion-mnist --out $(DATA)

# Retrain the shipped default model exactly as models/README.md says (about 76 minutes on 2 cores):
# 20 epochs from random weights, then two fine-tuning runs at lower learning rates.
STAGES ?= build/fmnist-vit-stage
model: data
	@mkdir -p $(dir $(STAGES))
	$(BIN)/vitedge train --data $(DATA)/train --epochs 20 --test-data $(DATA)/test -o $(STAGES)1.keras --force
	$(BIN)/vitedge train --data $(DATA)/train --init $(STAGES)1.keras --epochs 10 --lr 5e-4 --augment flip \
	  --test-data $(DATA)/test -o $(STAGES)2.keras --force
	$(BIN)/vitedge train --data $(DATA)/train --init $(STAGES)2.keras --epochs 4 --lr 2e-4 --val-split 0 \
	  --augment flip-shift --test-data $(DATA)/test -o $(MODEL) --force

test: install-dev fmnist $(MEDIAPIPE_STAMP) sshd-deb
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install-dev fmnist $(MEDIAPIPE_STAMP) sshd-deb
	$(BIN)/python -m pytest -q

# Only the tests marked slow (docs/testing.md): the checks too long for make test's 10 minutes.
.PHONY: test-slow
test-slow: install-dev fmnist sshd-deb
	$(BIN)/python -m pytest -q -m slow

# The model, preprocessing, predict, OpenVINO and layering tests on another Python in its own
# venv (docs/install.md): make test-python PY=python3.13
PY ?= python3.13
PY_VENV = .venv-$(notdir $(PY))
.PHONY: test-python
test-python: fmnist
	@test -d $(PY_VENV) || $(PY) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet -e ".[export,plot,openvino]" "pytest>=8,<10" "pytest-timeout>=2.3"
	$(PY_VENV)/bin/python -m pytest -q -m "not slow" tests/test_preprocess.py tests/test_predict.py \
	  tests/test_vit_model.py tests/test_openvino.py tests/test_layering.py

lint: install-dev
	$(BIN)/ruff check vitedge tests

# The main job on the shipped defaults: export the default model to every format and precision
# (calibrated on calibration/), then bench every artifact on the full Fashion-MNIST test split;
# the table, JSON, CSV and plot land in $(RESULTS)/.
demo: data
	@test -f $(MODEL) || { echo "note: $(MODEL) is not in this checkout; building the fmnist-tiny architecture with random weights instead (make model trains the real one)"; \
	  mkdir -p $(RESULTS) && for d in calibration/*/; do basename "$$d"; done > $(RESULTS)/labels.txt && \
	  $(BIN)/vitedge build --variant fmnist-tiny --labels $(RESULTS)/labels.txt -o $(MODEL); }
	$(BIN)/vitedge info $(MODEL)
	$(BIN)/vitedge export --model $(MODEL) --format all --precision all --calib calibration --out $(ARTIFACTS) --force
	$(MAKE) --no-print-directory bench
	@echo "demo results: $(RESULTS)/bench.txt $(RESULTS)/bench.json $(RESULTS)/bench.csv $(RESULTS)/bench.png"

# Every exported artifact of the default model, side by side on the Fashion-MNIST test split;
# the table, JSON, CSV and plot go to $(RESULTS)/. Needs the artifacts and the data on disk.
bench: install
	@ls $(ARTIFACTS)/$(STEM)_*.tflite $(ARTIFACTS)/$(STEM)_*.onnx >/dev/null 2>&1 || { \
	  echo "no $(ARTIFACTS)/$(STEM)_*.tflite/.onnx: export $(MODEL) first (vitedge export --model $(MODEL) --format all --precision ...)"; exit 1; }
	@test -d $(DATA)/test || { echo "no $(DATA)/test: make the data set first (vitedge data fashion-mnist --out $(DATA))"; exit 1; }
	@mkdir -p $(RESULTS)
	set -o pipefail; $(BIN)/vitedge bench $(wildcard $(ARTIFACTS)/$(STEM)_*.tflite) $(wildcard $(ARTIFACTS)/$(STEM)_*.onnx) \
	  $(wildcard $(ARTIFACTS)/$(STEM)_*.ort) --data $(DATA)/test --interleave 10 --json $(RESULTS)/bench.json --csv $(RESULTS)/bench.csv --plot $(RESULTS)/bench.png \
	  --force | tee $(RESULTS)/bench.txt

# Issue 7's int8 bar: default model and ViT-Ti/16@224, TFLite and ONNX, int8 vs fp32 (speed, size,
# top-1 on the full test split) in one bench run; exits non-zero when one falls short.
bench-int8: install
	$(BIN)/python scripts/bench_int8.py --model $(MODEL) --data $(DATA)/test --out $(RESULTS)/int8

# Export cost against model size (docs/export-memory.md): wall time and peak memory of the whole
# process tree per format and precision for ViT-Ti, ViT-S, ViT-B (FULL=1: + ViT-L), one export at
# a time; table on stdout, plot in $(RESULTS)/export-cost.png. Not part of make test (long).
bench-export: install
	@mkdir -p $(RESULTS)
	set -o pipefail; $(BIN)/python scripts/bench_export.py $(if $(FULL),--full) --plot $(RESULTS)/export-cost.png \
	  | tee $(RESULTS)/export-cost.txt

# Wall time of `vitedge predict` on one image next to a bare `python -c "import numpy"`.
bench-startup: install
	$(BIN)/python scripts/bench_startup.py --model $(ARTIFACTS)/$(STEM)_int8.tflite

# `vitedge predict` on a generated 12 MP EXIF-rotated JPEG next to a small PNG: wall time and peak memory.
bench-photo: install
	$(BIN)/python scripts/bench_photo.py --model $(ARTIFACTS)/$(STEM)_int8.tflite

# The core install on an emulated Raspberry Pi (arm64): same top-1 labels as x86 on the
# artifacts in $(ARTIFACTS)/ (needs root and ../shared/tools/pi-emulate; not part of make test).
pi-check: install fmnist
	bash scripts/pi_check.sh $(wildcard $(ARTIFACTS)/*.tflite) $(wildcard $(ARTIFACTS)/*.onnx) $(wildcard $(ARTIFACTS)/*.ort)

clean:
	rm -rf $(VENV) $(MEDIAPIPE_VENV) $(RESULTS) .pytest_cache
