# Two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Until the gRPC server lands (issue 4) the embedded default runs the
# power-on self-test of the soft backend's algorithms.
run: $(STAMP)
	$(BIN)/hsmsvc selfcheck

test: $(STAMP)
	$(BIN)/mypy --strict hsmsvc
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
