# The two commands of the README: `make demo` and `make test`. Both work on a fresh machine
# with nothing but Python: they create .venv when it is missing and install into it.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.peam-installed

.PHONY: demo test install browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: 2.13.0 is the CPU wheel; the project's own torch range is satisfied by it,
# so `pip install -e .` adds nothing more (TORCH_SPEC='torch' elsewhere picks a CUDA build).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium and its driver for the dashboard's browser tests; skipped where apt is
# not ours to use (the tests then skip with the reason).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "could not install chromium; browser tests will skip"; \
	fi

demo: $(STAMP)
	$(BIN)/peam demo

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15 tests

clean:
	rm -rf $(VENV) peam-data
