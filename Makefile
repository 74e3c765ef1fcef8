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

.PHONY: book test install lint clean-runs mutation book-check book-screenshots

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

# The HTML checks of CI over the built book (smoke note, no reprs/paths/tracebacks, links, TOC).
book-check: $(STAMP)
	MERNB_REQUIRE_BOOK=1 $(BIN)/python -m pytest tests/test_book_html.py -q

# For humans, not CI: a full-page screenshot of every built page with headless Chromium.
SHOTS ?= _build/screenshots
book-screenshots:
	mkdir -p $(SHOTS)
	for page in $$(cd _build/html && find . -name '*.html' -not -path './_*' -not -name genindex.html -not -name search.html); do \
		out=$(SHOTS)/$$(echo $$page | sed 's|^\./||; s|/|__|g; s|\.html$$|.png|'); \
		chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2400 \
			--screenshot=$$out file://$(CURDIR)/_build/html/$$page 2>/dev/null || exit 1; \
	done
	@echo "screenshots in $(SHOTS)"

lint: $(STAMP)
	$(BIN)/ruff check mernb tests

clean-runs:
	rm -rf runs/smoke _build

# Mutation testing (not in CI; minutes to hours): mutants of the files [tool.mutmut] only_mutate names in
# pyproject.toml, killed by the tests it selects; `make mutation` then `$(BIN)/mutmut results` lists survivors.
# `make mutation SAMPLE=40 [SEED=11]` runs only a seeded random sample of 40 mutants per package (one worker,
# nice 19) and reports killed/run per package with a 95 % Wilson interval (tools/mutation_score.py).
SEED ?= 11
mutation: $(STAMP)
	$(BIN)/python -m pip install -q "mutmut==3.8.1"
ifdef SAMPLE
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/python tools/mutation_score.py --sample $(SAMPLE) --seed $(SEED)
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run --max-children 1 $$(cat mutants/sample.txt)
	$(BIN)/python tools/mutation_score.py
else
	rm -f mutants/sample.txt
	$(BIN)/mutmut run
	$(BIN)/python tools/mutation_score.py --all
endif
