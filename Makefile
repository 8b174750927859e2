# Tierwise: `make run` serves the API with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_CUSTOMERS ?= 2000
TEST_WORKERS ?= 2

.PHONY: install run test lint openapi lock clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: install
	$(BIN)/tierwise serve --setup --demo-customers $(DEMO_CUSTOMERS)

# The suite under coverage (async code and subprocesses included, see pyproject.toml) over TEST_WORKERS
# pytest-xdist workers (each with a database of its own), then a summary; the suite's own exit status is the target's.
test: install
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -n $(TEST_WORKERS); status=$$?; \
	$(BIN)/coverage combine -q || true; $(BIN)/coverage report --skip-covered || true; exit $$status

# Lint (pycodestyle, pyflakes, import order, bugbear, pyupgrade) and format, as configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

openapi: install
	$(BIN)/tierwise openapi --output openapi/openapi.json

# Re-pin every dependency (needs network access to the package index).
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
