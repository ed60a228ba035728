# The two fresh-machine commands (README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when the pins change; the stamp name carries a hash of both pin files.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-lock.txt | sha1sum | cut -c1-12)

.PHONY: setup demo test lint docs bench clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements-lock.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/audio-platform process --demo

test: setup
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
