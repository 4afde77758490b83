# smsflows — `make run` starts the service, `make test` runs everything CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint format bench clean messages constraints screenshots

$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "smsflows needs Python 3.11 or newer (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]" -c constraints.txt
	@touch $@

# Local development: the service answers on $(PORT) and sends through a fake Mobitex gateway on
# $(FAKE_PORT) (`smsflows fake-mobitex`), which plays the phones too: their answers come back to the
# webhook. The loopback address may post MO messages (so `smsflows simulate` works), the API
# answers to the token "dev", and the dashboard has a user "dev" with the password "dev-password".
# Production sets its own SMSFLOWS_* values and users (docs/dashboard.md).
# The values are written to $(RUN_ENV) while the service runs, so that every smsflows command run
# beside it (send, broadcast, balance) reads the same settings; the file goes when `make run` stops.
FAKE_PORT ?= 8099
RUN_ENV   := var/make-run.env

run: $(BIN)/.installed
	@mkdir -p var && umask 077 && { \
		echo "# written by make run for the service and the smsflows commands beside it; removed when it stops"; \
		echo "SMSFLOWS_MO_ALLOWED_IPS=$${SMSFLOWS_MO_ALLOWED_IPS:-127.0.0.1,213.5.10.19,213.5.10.22}"; \
		echo "SMSFLOWS_API_TOKEN=$${SMSFLOWS_API_TOKEN:-dev}"; \
		echo "SMSFLOWS_SCHEMA=$${SMSFLOWS_SCHEMA:-open}"; \
		echo "SMSFLOWS_MOBITEX_URL=$${SMSFLOWS_MOBITEX_URL:-http://127.0.0.1:$(FAKE_PORT)/sms.php}"; \
		echo "SMSFLOWS_MOBITEX_USER=$${SMSFLOWS_MOBITEX_USER:-smsflows}"; \
		echo "SMSFLOWS_MOBITEX_PASSWORD=$${SMSFLOWS_MOBITEX_PASSWORD:-smsflows}"; \
		echo "SMSFLOWS_MOBITEX_FROM=$${SMSFLOWS_MOBITEX_FROM:-70120}"; \
		echo "SMSFLOWS_ACTION_SECRET=$${SMSFLOWS_ACTION_SECRET:-dev-secret}"; \
		echo "SMSFLOWS_SESSION_SECRET=$${SMSFLOWS_SESSION_SECRET:-dev-session-secret}"; \
		echo "SMSFLOWS_PSEUDONYM_KEY=$${SMSFLOWS_PSEUDONYM_KEY:-dev-pseudonyms}"; \
	} > $(RUN_ENV)
	@$(BIN)/smsflows fake-mobitex --host 127.0.0.1 --port $(FAKE_PORT) \
		--webhook http://127.0.0.1:$(PORT)/mobitex/mo --retry-interval 10 & fake=$$!; \
	trap 'kill $$fake 2>/dev/null; rm -f $(RUN_ENV)' EXIT INT TERM; \
	printf "dev-password\n" | $(BIN)/smsflows users add dev --role admin --password-stdin --exists-ok >/dev/null && \
	echo "dashboard: http://$(HOST):$(PORT)/  user dev, password dev-password (admin)" && \
	$(BIN)/smsflows serve --host $(HOST) --port $(PORT)

# pytest's exit code 5 means "no tests collected", which is not a failure of the code.
test: $(BIN)/.installed lint
	$(BIN)/pytest; status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# After upgrading packages in the .venv and running the whole suite: pin what was tested.
constraints: $(BIN)/.installed
	$(BIN)/python .ci/constraints.py > constraints.txt

bench: $(BIN)/.installed
	$(BIN)/python bench/mo_ingest.py

# The dashboard's texts: new strings from templates and app/dashboard into the catalogs (then
# translate the empty msgstr lines; the service reads the .po files as they are). The update keeps
# the catalog header, where the Polish plural rule lives.
messages: $(BIN)/.installed
	@mkdir -p var
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k tr --no-location --sort-output --omit-header -o var/messages.pot .
	$(BIN)/pybabel update -i var/messages.pot -d app/dashboard/locale --no-fuzzy-matching --ignore-obsolete

# The pictures in docs/screenshots, taken by the browser test in Debian's Chromium.
screenshots: $(BIN)/.installed
	SMSFLOWS_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_browser.py -q

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
