# `make run` and `make test` set themselves up on a fresh machine and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml setup.py Makefile src/threadloom/protocols/http1/_speedups.c src/threadloom/interfaces/_wsgi.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "threadloom needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast,bench,reload,metrics]'
	touch $(STAMP)

run: $(STAMP)
	@echo "threadloom demo: open http://127.0.0.1:8000/ in a browser (the tutorial's TCP hello: printf hi | nc 127.0.0.1 8001)"
	$(BIN)/threadloom

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Property tests draw from a seed printed first: `HYPOTHESIS_SEED=N make test` replays a run.
# Then the whole suite again with the C paths off (as without a C compiler), but for two that
# never reach them: Autobahn, whose minutes go to WebSocket frames (the handshake, its one
# C-backed step, is in tests/ws, which both passes run), and the guards' own tests (no HTTP).
unit: $(STAMP)
	@seed=$${HYPOTHESIS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "hypothesis seed: $$seed (HYPOTHESIS_SEED=$$seed make test draws the same inputs)"; \
	$(BIN)/python -m pytest -q --hypothesis-seed=$$seed && \
	echo "the whole suite again, pure Python (as without a C compiler), hypothesis seed $$seed:" && \
	THREADLOOM_PURE_PYTHON=1 $(BIN)/python -m pytest -q --hypothesis-seed=$$seed \
		--ignore=tests/ws/test_autobahn.py --ignore=tests/test_guards.py

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build src/*.egg-info
	find src -name '*.so' -delete
