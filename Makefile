# The two commands of the README:
#   make book   build the whole Jupyter Book on the embedded default (SynthME, tiny models, CPU)
#   make test   run the test suite
# Both create or refresh .venv when pyproject.toml or the install script changed.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mernb-installed
PLAN ?= plans/smoke.yaml
JOBS ?= 2
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: book test install lint clean-runs

$(STAMP): pyproject.toml tools/install.sh tools/_tv_cpu_fix.py
	bash tools/install.sh $(VENV)
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/mernb synth $(PLAN)
	$(BIN)/mernb pretrain-smoke $(PLAN)
	$(BIN)/mernb run $(PLAN) --jobs $(JOBS)
	$(BIN)/mernb book $(PLAN)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mernb tests

clean-runs:
	rm -rf runs/smoke _build
