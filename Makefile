# ochopod — run `make help` for the targets.
SHELL := /bin/bash
CARGO ?= cargo
ZK_JAR := /usr/share/java/zookeeper.jar
# apt-get needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup build demo test image e2e lint fmt bench reliability soak clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## Install what the tests need (Debian zookeeper, etcd-server, protobuf-compiler, openssl, redis, python3, iproute2, util-linux, chromium) if missing, fetch crates
	@missing=""; \
	[ -f $(ZK_JAR) ] && command -v java >/dev/null || missing="$$missing zookeeper"; \
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing="$$missing redis-server"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || missing="$$missing chromium chromium-driver"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@$(CARGO) fetch -q

build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins

demo: setup build ## Start a local ZooKeeper, form a 3-pod ZooKeeper ensemble with ochopod, show it, tear down
	bash examples/demo.sh

test: setup build ## Run every test (unit, actor, and integration against a real ZooKeeper; not e2e)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --exclude ochopod-e2e --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --exclude ochopod-e2e --no-fail-fast; \
	fi

image: ## Build the Docker images here, no registry: Debian base (debootstrap, cached), ochopod, one per example
	CARGO=$(CARGO) bash images/build.sh

e2e: image ## End-to-end scenarios on the Docker engine: pods as containers, ochopod as PID 1
	CARGO=$(CARGO) bash images/e2e.sh

lint: ## fmt check + clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: setup ## Benchmarks against a real ZooKeeper, scale included (about 4 min on 2 cores); writes bench/results.md; exits 1 when a target is missed
	$(CARGO) build --release --workspace --bins --exclude ochopod
	CARGO=$(CARGO) bash images/release.sh
	$(CARGO) run --release -p ochopod-integration --bin ochopod-bench -- --out bench/results.md

reliability: setup build ## Fault tests that write their measured bounds into bench/reliability.md
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  OCHOPOD_WRITE_BENCH=1 $(CARGO) nextest run -p ochopod --test faults --test chaos; \
	else \
	  OCHOPOD_WRITE_BENCH=1 $(CARGO) test -p ochopod --test faults --test chaos; \
	fi

soak: setup build ## Churn run (random kills and joins) for SOAK_SECS seconds (default 600), then check convergence
	OCHOPOD_CHURN_SECS=$${SOAK_SECS:-600} $(CARGO) test -p ochopod --test chaos churn -- --nocapture

clean: ## Remove build output
	$(CARGO) clean
