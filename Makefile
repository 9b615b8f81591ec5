# vitedge: make demo (the main job on the shipped model) and make test are all a new user needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DATA ?= data/fashion-mnist
RESULTS ?= results
MODEL ?= models/fmnist-vit.keras

.PHONY: install test test-all lint demo fmnist-deb clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[export,dev]"
	@touch $(STAMP)

# Debian's real Fashion-MNIST files (IDX); installs the package when it is missing.
fmnist-deb:
	@test -f $(FMNIST_DEB) || { \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; }

test: install fmnist-deb
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install fmnist-deb
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check vitedge tests

demo: install
	$(BIN)/vitedge variants
	$(BIN)/vitedge build --variant fmnist-tiny -o $(RESULTS)/fmnist-tiny.keras --force
	$(BIN)/vitedge info $(RESULTS)/fmnist-tiny.keras

clean:
	rm -rf $(VENV) $(RESULTS) .pytest_cache
