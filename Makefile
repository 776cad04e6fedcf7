# Two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test proto clean

# The test environment comes from requirements/test.lock, every file checked against its hash
# (regenerate it with the command at its top after a dependency changes); then the two local
# packages, hsmsvc-client and the server, editable and without dependencies, built by the locked
# setuptools. `pip check` fails the install when the lock lacks a dependency of theirs.
# tools/ is not packaged (a wheel has no tools/bench): the .pth puts this checkout on the venv's
# path, so that `.venv/bin/hsmsvc bench` and `python -m tools.bench` find it from anywhere.
$(STAMP): pyproject.toml clients/python/pyproject.toml requirements/test.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e clients/python -e .
	$(BIN)/pip check
	$(BIN)/python -c 'import sys, sysconfig; open(sysconfig.get_path("purelib") + "/hsmsvc-checkout.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $(STAMP)

# The embedded default: power-on self-test, a development LMK sealed under
# HSMSVC_LMK_PASSPHRASE on first use, the published demo keys, then the gRPC
# server in plaintext development mode on 127.0.0.1:$(PORT) (metrics on :$(METRICS_PORT)),
# which upgrades its SQLite schema itself (auto_migrate is on under --insecure-dev).
# `make run PORT=18443 METRICS_PORT=19464` when those are taken.
# Production runs `hsmsvc serve --config hsmsvc.toml` with mTLS and a policy (deploy/).
DATA := .hsmsvc
PORT ?= 8443
METRICS_PORT ?= 9464
export HSMSVC_LMK_PASSPHRASE ?= development-only-passphrase
LMK_ARGS := --sealed $(DATA)/lmk.sealed --passphrase-env HSMSVC_LMK_PASSPHRASE
run: $(STAMP)
	$(BIN)/hsmsvc selfcheck
	test -f $(DATA)/lmk.sealed || $(BIN)/hsmsvc lmk init $(LMK_ARGS)
	$(BIN)/hsmsvc dev seed $(LMK_ARGS) --store sqlite:///$(DATA)/keys.db
	$(BIN)/hsmsvc serve --insecure-dev $(LMK_ARGS) --store sqlite:///$(DATA)/keys.db \
		--listen 127.0.0.1:$(PORT) --metrics-listen 127.0.0.1:$(METRICS_PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict hsmsvc clients/python/hsmsvc_client
	$(BIN)/pytest -q

# Regenerate clients/python/hsmsvc_client/v1 from proto/ (CI fails when the committed stubs are stale).
proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
