# make run   - create .venv if needed, install requirements.txt, start the app
# make test  - the same plus requirements-dev.txt and Chromium, then the whole test suite
# make bench - measurements (see bench/README.md); make lint - ruff
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test lint bench chromium demo-model clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements-ray.txt $(VENV)/.run-installed
	$(PY) -m pip install -r requirements-dev.txt -r requirements-ray.txt
	@touch $@

# make run MODEL=pkg.module:factory WEIGHTS=w.safetensors CLASSES=names.txt IMAGES=~/xrays (all optional)
RUN_ENV = $(if $(MODEL),FEATVIZ_MODEL="$(MODEL)") $(if $(WEIGHTS),FEATVIZ_WEIGHTS="$(WEIGHTS)") \
          $(if $(CLASSES),FEATVIZ_CLASSES="$(CLASSES)") $(if $(IMAGES),FEATVIZ_IMAGES="$(IMAGES)")

run: $(VENV)/.run-installed
	$(RUN_ENV) $(PY) -m streamlit run app.py --server.port $(PORT)

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
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
