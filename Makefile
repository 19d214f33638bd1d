# ferrule: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV313 := .venv313
PY313 := $(VENV313)/bin/python

.DEFAULT_GOAL := help

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The development tools, installed again when requirements-dev.txt changes (a venv made before
# `make wheel` needed ziglang gets it on the next make).
DEV := $(VENV)/.requirements-dev
$(DEV): requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(DEV)  ## create .venv with the development tools

# The wheel `make wheel` leaves in dist/: abi3, so one file serves every CPython 3.10 and later.
# A shell glob, expanded when a recipe runs (after the wheel is built).
WHEEL := dist/ferrule-*-manylinux*_$(shell uname -m).whl

.PHONY: wheel
wheel: $(DEV)  ## build the abi3 manylinux2014 wheel (glibc 2.17+, linked by zig) into dist/
	rm -f $(WHEEL)
	@# maturin runs zig as `python3 -m ziglang`, with the python3 first on PATH.
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release -q \
		--zig --compatibility manylinux2014 --out dist
	@ls $(WHEEL)

# musl (Alpine): the same wheel for x86_64-unknown-linux-musl, checked by maturin against
# musllinux_1_2. Not part of `make test`: nothing here can run it (no musl CPython), and it
# is a second release compile. It needs Rust's standard library for that target (rustup).
.PHONY: wheel-musl
wheel-musl: $(DEV)  ## build the abi3 musllinux_1_2 wheel (x86_64, linked by zig) into dist/
	rustup target add x86_64-unknown-linux-musl
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release -q \
		--zig --target x86_64-unknown-linux-musl --compatibility musllinux_1_2 --out dist
	@ls dist/ferrule-*-musllinux_1_2_x86_64.whl

.PHONY: build
build: wheel  ## build the wheel, then install it into .venv (the only release compile)
	$(PY) -m pip install -q --force-reinstall --no-deps $(WHEEL)
	@# What `maturin develop` used to put beside the sources; nothing imports from there now.
	rm -f python/ferrule/_ferrule*.so

.PHONY: run
run: build  ## build, then serve the demo Django site at http://127.0.0.1:8000
	cd demo && ../$(PY) manage.py migrate --noinput -v0 && ../$(PY) manage.py server 127.0.0.1:8000

.PHONY: test
test: build test-rust test-py test-py313 test-portable test-wheels  ## build, then run every test

.PHONY: test-rust
test-rust:  ## cargo tests for the pure-Rust logic
	cargo test --lib -q

.PHONY: test-py
test-py: build  ## pytest against live servers on CPython 3.11 (or the default python3)
	$(PY) -m pytest -q -p no:cacheprovider tests

# CPython 3.13 from pyenv, else from PATH; the Django 6 run is skipped (loudly) without one.
PYTHON313 ?= $(shell p=$$(pyenv prefix 3.13.0 2>/dev/null) && echo $$p/bin/python3.13 || command -v python3.13)

$(PY313):
	$(PYTHON313) -m venv $(VENV313)
	$(PY313) -m pip install -q --upgrade pip
	$(PY313) -m pip install -q pytest pytest-timeout requests "django>=6,<7"

.PHONY: test-py313
test-py313: build  ## the Django tests (WSGI and ASGI) on CPython 3.13 with Django 6, same wheel
	@if [ -z "$(PYTHON313)" ]; then echo "SKIPPED: no CPython 3.13 found for the Django 6 run"; exit 0; fi; \
	$(MAKE) --no-print-directory $(PY313) && \
	$(PY313) -m pip install -q --force-reinstall --no-deps $(WHEEL) && \
	$(PY313) -m pytest -q -p no:cacheprovider tests/test_django.py tests/test_django_asgi.py

.PHONY: test-wheels
test-wheels: build  ## the wheel in a fresh venv per CPython 3.10-3.13: tests/smoke/smoke.py
	$(PY) tests/smoke/each_python.py --venvs .venv-smoke $(WHEEL)

# The POSIX paths macOS and FreeBSD use (src/platform/), run here: the extension built with the
# `portable` feature (a debug build: it compiles in a fraction of the release build's time, on
# the dependencies test-rust compiled) into target/portable/ beside the Python sources, put
# first on PYTHONPATH; then the tests that depend on those paths: the pool's growth (a CPU
# clock without a run state), the workers' board (shm_open), the event loop's doorbell (a
# pipe), --max-rss and reload.
PORTABLE := target/portable
PORTABLE_TESTS := tests/test_platform_paths.py \
	"tests/test_supervise.py::test_a_burst_of_keep_alive_connections_is_shared_between_the_workers" \
	"tests/test_supervise.py::test_a_worker_killed_under_load_is_replaced_and_the_rest_unaffected" \
	"tests/test_supervise.py::test_max_rss_replaces_a_worker_that_grows" \
	"tests/test_supervise.py::test_ttin_and_ttou_add_and_remove_a_worker" \
	"tests/test_reload.py::test_a_changed_module_restarts_the_worker" \
	"tests/test_reload.py::test_manage_py_server_reloads_by_default_and_noreload_turns_it_off" \
	"tests/test_cli.py::test_ferrule_threads_env_runs_two_requests_at_once"

.PHONY: test-portable
test-portable: build  ## the portable (macOS/FreeBSD) code paths, on a Linux build that uses them
	cargo test --lib -q --features portable -- platform:: pool::
	cargo build --lib -q --features portable,pyo3/extension-module
	rm -rf $(PORTABLE) && mkdir -p $(PORTABLE)
	cp -r python/ferrule $(PORTABLE)/ferrule
	cp target/debug/lib_ferrule.so $(PORTABLE)/ferrule/_ferrule.abi3.so
	FERRULE_EXPECT_PATHS=portable PYTHONPATH=$(abspath $(PORTABLE)) \
		$(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)

# macOS and FreeBSD cannot be run here, but their code paths (src/platform/) can be compiled:
# clippy for each target with Rust's std for it (rustup) and zig as the C compiler for ring's
# build script (tools/zig-cc). Nothing is linked or run. A target whose std cannot be
# installed is skipped, loudly.
CROSS_TARGETS := x86_64-apple-darwin:x86_64-macos aarch64-apple-darwin:aarch64-macos \
	x86_64-unknown-freebsd:x86_64-freebsd

.PHONY: check-platforms
check-platforms: $(DEV)  ## clippy -D warnings for macOS (arm64, x86_64) and FreeBSD, from Linux
	@for pair in $(CROSS_TARGETS); do \
	  target=$${pair%%:*}; \
	  if ! rustup target add "$$target" >/dev/null 2>&1; then \
	    echo "SKIPPED: cannot install Rust's standard library for $$target"; continue; \
	  fi; \
	  echo "cargo clippy --target $$target"; \
	  env "CC_$${target//-/_}=$(abspath tools/zig-cc)" ZIG_TARGET="$${pair##*:}" \
	    ZIG_PYTHON=$(abspath $(PY)) PYO3_CROSS_PYTHON_VERSION=3.10 CARGO_TARGET_DIR=target/cross \
	    cargo clippy --all-targets -q --target "$$target" -- -D warnings || exit 1; \
	done

.PHONY: lint
lint: build  ## rustfmt, clippy (-D warnings), ruff, stubtest for the .pyi, the release workflow
	cargo fmt --check
	cargo clippy --all-targets -q -- -D warnings
	cargo clippy --all-targets -q --features portable -- -D warnings
	$(MAKE) --no-print-directory check-platforms
	$(VENV)/bin/ruff check python tests bench demo
	$(VENV)/bin/ruff format --check python tests bench demo
	$(PY) -m mypy.stubtest ferrule._ferrule
	$(VENV)/bin/check-jsonschema -q --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/zizmor -q --offline .github/workflows

.PHONY: fmt
fmt: $(DEV)  ## format Rust and Python
	cargo fmt
	$(VENV)/bin/ruff format python tests bench demo

.PHONY: bench
bench: $(DEV)  ## run ferrule and its peers side by side (see bench/README.md)
	$(PY) bench/run.py

.PHONY: bench-static
bench-static: $(DEV)  ## static files and HTTP/2 over TLS: ferrule vs nginx, granian, WhiteNoise
	$(PY) bench/static.py

.PHONY: bench-async
bench-async: $(DEV)  ## ferrule.gather vs async_to_sync, and clients that abandon requests
	$(PY) bench/async.py

.PHONY: bench-stats
bench-stats: $(DEV)  ## what statistics cost: /plain with the admin listener scraped vs off
	$(PY) bench/stats.py

.PHONY: bench-hooks
bench-hooks: $(DEV)  ## what per-request hooks cost: /plain with --hooks vs without
	$(PY) bench/hooks.py

.PHONY: bench-workers
bench-workers: $(DEV)  ## /plain and /template with 2 worker processes per server
	$(PY) bench/run.py --workers 2 --only plain,template

.PHONY: soak
soak: $(DEV)  ## 30 minutes of mixed traffic on 2 workers: errors, RSS and fds over time
	$(PY) bench/soak.py

.PHONY: bench-reload
bench-reload: $(DEV)  ## development reload: from saving a view to the first new response
	$(PY) bench/reload.py

.PHONY: clean
clean:  ## remove build outputs and virtualenvs
	cargo clean
	rm -rf $(VENV) $(VENV313) .venv-smoke dist

# Seconds each fuzz target runs; FUZZ_TARGETS picks some of them (docs/fuzzing.md).
FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz:  ## run each cargo-fuzz target FUZZ_SECONDS (default 60) from fuzz/seeds (nightly features)
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh
