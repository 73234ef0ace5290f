# mailwarden — the two commands a new user needs:
#   make quickstart   install Postfix, Dovecot, ClamAV, SpamAssassin and mailwarden (SQLite default), run doctor
#   make test         install everything the tests need (Debian packages, Python deps) and run them all
#
# Everything runs as root on Debian 12. Nothing here touches the system Postfix/Dovecot
# configuration; the tests start private instances on 127.0.0.1 and unix sockets.

PREFIX      ?= /opt/mailwarden
VENV        ?= $(PREFIX)/venv
TEST_VENV   ?= /opt/mailwarden-test/venv
PY          := $(TEST_VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: quickstart install test test-deps check unit integration lint typecheck bench clean

# Fresh Debian 12 -> Postfix + Dovecot + ClamAV + SpamAssassin + mailwarden on SQLite for
# $(DOMAIN) (default example.test), then `mailwarden doctor`. Safe to re-run.
quickstart:
	PREFIX=$(PREFIX) scripts/quickstart.sh

install:
	@command -v /usr/bin/python3 >/dev/null || { echo "install python3 first: apt-get install python3 python3-venv"; exit 1; }
	@/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
	@$(VENV)/bin/python -c 'import Milter' 2>/dev/null || scripts/check-build-deps.sh
	test -x $(VENV)/bin/python || /usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null
	$(VENV)/bin/pip install -q .
	ln -sf $(VENV)/bin/mailwarden /usr/local/bin/mailwarden
	ln -sf $(VENV)/bin/mailwarden-lda /usr/local/bin/mailwarden-lda

# The CI entry point (.ci/run calls this): dependencies, then lint, types and every test.
test: test-deps check

test-deps:
	scripts/install-deps.sh

check: lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

unit:
	$(PY) -m pytest -q tests/unit

integration:
	$(PY) -m pytest -q -m integration tests

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

typecheck:
	$(PY) -m mypy

bench:
	PYTHONPATH=src $(PY) bench/bench_lda.py
	PYTHONPATH=src $(PY) bench/bench_policy.py
	PYTHONPATH=src $(PY) bench/bench_milter.py

clean:
	rm -rf build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
