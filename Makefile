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

# Until the gRPC server lands (issue 4) the embedded default runs the power-on
# self-test, forms a development LMK on first use (sealed under HSMSVC_LMK_PASSPHRASE)
# and opens it with the SQLite key store: migrations, audit chain check.
DATA := .hsmsvc
export HSMSVC_LMK_PASSPHRASE ?= development-only-passphrase
run: $(STAMP)
	$(BIN)/hsmsvc selfcheck
	test -f $(DATA)/lmk.sealed || $(BIN)/hsmsvc lmk init --sealed $(DATA)/lmk.sealed --passphrase-env HSMSVC_LMK_PASSPHRASE
	$(BIN)/hsmsvc status --sealed $(DATA)/lmk.sealed --passphrase-env HSMSVC_LMK_PASSPHRASE --store sqlite:///$(DATA)/keys.db

test: $(STAMP)
	$(BIN)/mypy --strict hsmsvc
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
