# make run   - create .venv if needed, install requirements.txt, start the app (`featviz run`)
#              make run MODEL=pkg.module:factory WEIGHTS=w.safetensors CLASSES=names.txt IMAGES=~/xrays PORT=8600
# make test  - the same plus requirements-dev.txt and Chromium, then the whole test suite
# make bench - measurements (see bench/README.md); make lint - ruff
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# PyPI's torch for Linux is the CUDA build: the test environment takes about 7 GB, the run one about 6 GB.
DISK_HINT = echo "pip could not install everything. Free space here: $$(df -h . | awk 'NR==2 {print $$4}') (the test environment needs about 7 GB)." >&2

.PHONY: run test lint bench chromium demo-model clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(PY)
	$(PY) -m pip install --no-cache-dir -r requirements.txt || { $(DISK_HINT); exit 1; }
	@touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements-ray.txt $(VENV)/.run-installed
	$(PY) -m pip install --no-cache-dir -r requirements-dev.txt -r requirements-ray.txt || { $(DISK_HINT); exit 1; }
	@touch $@

# Optional settings of `make run`, handed to `featviz run` (see featviz/cli.py).
RUN_ARGS = $(if $(MODEL),--model "$(MODEL)") $(if $(WEIGHTS),--weights "$(WEIGHTS)") \
           $(if $(CLASSES),--classes "$(CLASSES)") $(if $(INPUT_SIZE),--input-size "$(INPUT_SIZE)") \
           $(if $(NORMALIZATION),--normalization "$(NORMALIZATION)") $(if $(IMAGES),--images "$(IMAGES)")

run: $(VENV)/.run-installed
	$(PY) -m featviz run --port $(PORT) $(RUN_ARGS)

chromium:
	@bash scripts/ensure_chromium.sh

test: $(VENV)/.dev-installed chromium
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

bench: $(VENV)/.dev-installed chromium
	$(PY) -m bench.run

demo-model: $(VENV)/.run-installed
	$(PY) -m featviz_core.demo.train

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts build *.egg-info
