# The two fresh-machine commands (README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when the pins change; the stamp name carries a hash of both pin files.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-lock.txt | sha1sum | cut -c1-12)

.PHONY: setup system-deps demo test lint docs bench clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements-lock.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/audio-platform process --demo

# Debian packages that some tests drive: headless Chromium (UI test) and a throwaway PostgreSQL
# server (production-store tests). Installed when missing and apt-get is usable (root); otherwise
# those tests skip, except under CI=... where they fail instead.
system-deps:
	@if ! command -v chromedriver >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver postgresql; \
	  else echo "note: chromium/chromium-driver/postgresql missing and apt-get unusable: their tests will skip"; fi; \
	fi

test: setup system-deps
	$(BIN)/python -m pytest --cov=audio_platform --cov-report=term --cov-report=xml -q

lint: setup
	$(BIN)/ruff check audio_platform audio_platform_tests benchmarks
	$(BIN)/mypy

# docs/tables.md and docs/configuration.md from the code (a test fails while they are stale).
docs: setup
	$(BIN)/python -m audio_platform.reference

# Platform vs plain faster-whisper scripts on ../shared/corpus; writes docs/benchmarks.md (8-13 min).
bench: setup
	$(BIN)/python -m benchmarks.pipeline_bench

clean:
	rm -rf .audio_platform .pytest_cache .mypy_cache .ruff_cache .coverage coverage.xml
