# The two quick-start commands: `make run` (standalone service) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench image clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ee2 serve

test: $(STAMP)
	$(BIN)/ruff check execution_engine2 lib test bench
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/retry.py
	$(BIN)/python bench/memory.py

# The production image, stamped with this checkout's commit (reported by `status`).
image:
	docker build --build-arg GIT_COMMIT=$$(git rev-parse HEAD) -t execution_engine2 .

clean:
	rm -rf $(VENV) ee2-data .pytest_cache
