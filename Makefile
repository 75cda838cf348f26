# `make run` and `make test` set themselves up on a fresh machine and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit asan bench clean

$(STAMP): pyproject.toml setup.py Makefile src/threadloom/protocols/http1/_speedups.c src/threadloom/interfaces/_wsgi.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "threadloom needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast,bench,reload,metrics,http2-fast]'
	touch $(STAMP)

run: $(STAMP)
	@echo "threadloom demo: open http://127.0.0.1:8000/ in a browser; the tutorial's TCP hello is on 127.0.0.1:8001 (README.md shows how to talk to it)"
	$(BIN)/threadloom

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Property tests draw from a seed printed first: `HYPOTHESIS_SEED=N make test` replays a run.
# The first pass runs every HTTP/2 test under both cores, h2 and ngh2 (the default, installed
# here by the http2-fast extra), the frame-level conformance and attack suites included.
# Then the whole suite again as on a machine without a C compiler: threadloom's C paths off
# and the pure-Python h2 core (THREADLOOM_H2_CORE=h2), but for what never reaches the C:
# Autobahn, whose minutes go to WebSocket frames (the handshake, its one C-backed step, is in
# tests/ws, which both passes run), the guards' own tests (no HTTP), and HTTP/2 past its
# preface (frames only, C parses HTTP/1.1: the first pass ran every HTTP/2 test under h2
# already; test_h2_basic and the seam's tests stay, for the preface sniffed on the pure
# path). The slow-read attack runs with 150 readers there (300 in the first pass): what it
# checks of the pure path is the same, and CI's 45 minutes are tight.
unit: $(STAMP)
	@seed=$${HYPOTHESIS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "hypothesis seed: $$seed (HYPOTHESIS_SEED=$$seed make test draws the same inputs)"; \
	$(BIN)/python -m pytest -q --hypothesis-seed=$$seed && \
	echo "the whole suite again, pure Python (as without a C compiler), hypothesis seed $$seed:" && \
	THREADLOOM_PURE_PYTHON=1 THREADLOOM_H2_CORE=h2 THREADLOOM_SLOW_READERS=150 \
		$(BIN)/python -m pytest -q --hypothesis-seed=$$seed \
		--ignore=tests/ws/test_autobahn.py --ignore=tests/test_guards.py \
		$(foreach t,conformance attacks real_clients websocket_h2 window_credit body_end, \
			--ignore=tests/http2/test_$(t).py)

test: lint typecheck unit

# The C extensions under AddressSanitizer, built into build/asan (a copy of the package with
# its own .so files; the in-place ones are not touched): the C-path tests, then a minute of
# atheris on the C request parser against the Python path (tests/fuzz/http1c_target.py).
# The .so files are compiled with ASan but linked without its runtime, which LD_PRELOAD
# supplies: gcc's for the tests, atheris's (ASan with libFuzzer) for the fuzzing, since two
# ASan runtimes in one process refuse to start. trace-cmp lets libFuzzer see the C's
# comparisons. PYTHONMALLOC=malloc lets ASan see every object, pymalloc's small ones
# included; Python's own leaks at exit are not ours to report.
ASAN_DIR := build/asan
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address -fsanitize-coverage=trace-cmp -Wall
ASAN_FUZZ_S ?= 60
ASAN_ENV = env PYTHONPATH=$(CURDIR)/$(ASAN_DIR) PYTHONMALLOC=malloc THREADLOOM_PURE_PYTHON= \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:check_initialization_order=1
GCC_ASAN = LD_PRELOAD="$$(gcc -print-file-name=libasan.so)"
ATHERIS_ASAN = LD_PRELOAD="$$($(BIN)/python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"

asan: $(STAMP)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -R src/threadloom $(ASAN_DIR)/threadloom
	find $(ASAN_DIR) \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
	@include=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	suffix=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	for ext in protocols/http1/_speedups interfaces/_wsgi; do \
		echo "gcc $(ASAN_CFLAGS) src/threadloom/$$ext.c -> $(ASAN_DIR)"; \
		gcc -c -fPIC $(ASAN_CFLAGS) -I"$$include" src/threadloom/$$ext.c -o $(ASAN_DIR)/ext.o && \
		gcc -shared $(ASAN_DIR)/ext.o -o $(ASAN_DIR)/threadloom/$$ext$$suffix || exit 1; \
	done
	$(ASAN_ENV) $(GCC_ASAN) $(BIN)/python -c 'import sys; from threadloom.protocols.http1 import \
		_speedups, speedups; from threadloom.interfaces import _wsgi; \
		files = [_speedups.__file__, _wsgi.__file__]; print(*files, sep="\n"); \
		sys.exit(not speedups.ACTIVE or any("$(ASAN_DIR)/" not in f for f in files))'
	@# not the peak-memory tests (ASan's quarantine holds freed memory) nor the 2 s atheris
	@# runs (their RSS limit is for plain builds; the run below replaces them)
	$(ASAN_ENV) $(GCC_ASAN) $(BIN)/python -m pytest -q -p no:cacheprovider tests/http1 \
		tests/protocols tests/fuzz -k 'not bounded_memory and not short_atheris_run'
	$(BIN)/python tests/fuzz/runner.py http1c --export $(ASAN_DIR)/corpus
	$(ASAN_ENV) $(ATHERIS_ASAN) $(BIN)/python tests/fuzz/runner.py http1c --atheris \
		-use_value_profile=1 -max_total_time=$(ASAN_FUZZ_S) -max_len=4096 -rss_limit_mb=4096 \
		-artifact_prefix=$(ASAN_DIR)/ $(ASAN_DIR)/corpus

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build src/*.egg-info
	find src -name '*.so' -delete
