# chiso: `make run` serves the demo history on 127.0.0.1:7878 (data in ./chiso-data); `make test` runs every
# check CI runs. Both install the system packages they need when missing.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/chiso-target
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := librocksdb-dev libclang-dev pkg-config
# The real clients the end-to-end tests drive (psql, pgjdbc, a headless browser for the web console
# with fonts that have Vietnamese; Java 17 is assumed present).
CLIENT_PACKAGES := postgresql-client libpostgresql-jdbc-java openssl chromium chromium-driver fonts-liberation

.PHONY: run test deps client-deps notebook-deps build bench fmt lint

deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

client-deps:
	@missing=""; for p in $(CLIENT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	python3 -m pip install -q --root-user-action=ignore --disable-pip-version-check -r tests/clients/requirements.txt

# The notebooks' Python packages (pinned), for their headless run in `make test`.
notebook-deps:
	python3 -m pip install -q --root-user-action=ignore --disable-pip-version-check -r notebooks/requirements.txt

build: deps
	cargo build --release --bin chiso

run: build
	$(CARGO_TARGET_DIR)/release/chiso serve --demo

test: deps client-deps notebook-deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	# `cargo test` built target/debug/chiso for the end-to-end tests: the notebooks use it too.
	python3 notebooks/run_notebooks.py --chiso $(CARGO_TARGET_DIR)/debug/chiso
	# The web console in headless chromium against a `chiso serve --demo` of its own.
	python3 tests/browser/console.py --chiso $(CARGO_TARGET_DIR)/debug/chiso

bench: deps
	bash bench/run.sh
