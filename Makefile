# lupusbayes: two commands from a fresh clone.
#   make demo   - create .venv if needed, then run the full pipeline on the shipped KN5601 data
#   make test   - create .venv if needed, then run the test suite (what CI runs)
# Other targets: make test-fast (no real MCMC), make docs, make validate (simulation-based
# calibration, ~10 min), make benchmark.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= outputs/demo
SEED ?= 20251108

.PHONY: demo test test-fast docs validate benchmark lock clean bytecode

$(STAMP): pyproject.toml constraints.txt
	@PYTHON_BIN=$$(scripts/find_python.sh) || exit 1; \
	echo "Using $$PYTHON_BIN ($$($$PYTHON_BIN --version))"; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		rm -rf $(VENV); $$PYTHON_BIN -m venv $(VENV) || exit 1; \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,docs,dask]'
	@touch $(STAMP)

# The package's bytecode, as a regular (non-editable) install writes it: every lupusbayes process, the test
# suite's included, then skips compiling the sources (0.5 s a process, measured), even where
# PYTHONDONTWRITEBYTECODE is set. Up to date sources are skipped.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src/lupusbayes

demo: $(STAMP) bytecode
	$(BIN)/lupusbayes demo --out $(DEMO_OUT) --seed $(SEED) --overwrite --mkdir

test: $(STAMP) bytecode
	$(BIN)/python -m pytest -q

# Everything but real MCMC (unit and mock-sampling tiers): for quick iterations.
test-fast: $(STAMP) bytecode
	$(BIN)/python -m pytest -q -m "not mcmc"

docs: $(STAMP) bytecode
	$(BIN)/python -m sphinx -W --keep-going -b html -q docs docs/_build/html

validate: $(STAMP)
	$(BIN)/python scripts/validate_sbc.py --out docs/validation --seed $(SEED)

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark_fit.py --seed $(SEED)

# Regenerate the pinned constraints from a clean resolve (run by a developer, then commit).
lock:
	@PYTHON_BIN=$$(scripts/find_python.sh) || exit 1; \
	rm -rf .lock-venv && $$PYTHON_BIN -m venv .lock-venv && \
	.lock-venv/bin/python -m pip install --quiet --upgrade pip && \
	.lock-venv/bin/python -m pip install --quiet '.[test,docs,dask]' && \
	.lock-venv/bin/python -m pip freeze --exclude lupusbayes | sed '/^-e /d' > constraints.txt && \
	rm -rf .lock-venv && echo "constraints.txt updated"

clean:
	rm -rf $(VENV) docs/_build outputs .pytest_cache
