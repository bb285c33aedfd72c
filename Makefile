# Statelab Shop. `make test` is what CI runs (via .ci/run): it installs the
# Debian packages the tests need, checks formatting, vet and generated code,
# then runs every test against real SQLite, PostgreSQL, Redis and nginx.

SHELL := /bin/bash
GO ?= go
# STORE, LB and UPLOADS unset follow PROFILE, or default to redis, roundrobin
# and disk (cmd/cluster decides).
PROFILE ?=
STORE ?=
LB ?=
LOCK ?= on
UPLOADS ?=
PORT ?= 8080
LOG ?= warn
PACKAGES := redis-server nginx chromium postgresql
BINARIES := redis-server nginx chromium
VERSITYGW_INSTALL := $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

.PHONY: test deps check fuzz generate run cluster clean bench benchcmp bench-baseline

test: deps check
	SHOP_TEST_REQUIRE=all $(GO) test -race -count=1 -timeout 9m ./...
	$(MAKE) fuzz

# fuzz: a short, fixed run of each fuzz target (seed corpora in web/testdata/fuzz).
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCart$$' -fuzztime $(FUZZTIME) ./web/
	$(GO) test -run '^$$' -fuzz '^FuzzCartForm$$' -fuzztime $(FUZZTIME) ./web/

# deps installs the Debian packages the tests run for real. As root (CI) it
# uses apt-get directly, otherwise sudo; without either it says what to run.
deps:
	@missing=""; for b in $(BINARIES); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || missing="$$missing postgres"; \
	if [ -n "$$missing" ]; then \
		echo "installing $(PACKAGES) (missing:$$missing)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
		else echo "run as root: apt-get update && apt-get install -y $(PACKAGES)"; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(PACKAGES) >/dev/null; \
	fi
	@# versitygw, the S3 object store of the tests, the harness and the lab, is a
	@# Go program (no Debian package): go install puts it in $$(go env GOPATH)/bin
	@# (or GOBIN), where internal/testenv finds it even when PATH does not.
	@command -v versitygw >/dev/null 2>&1 || [ -x "$$($(GO) env GOBIN)/versitygw" ] || [ -x "$$($(GO) env GOPATH | cut -d: -f1)/bin/versitygw" ] || \
		{ echo "installing versitygw (about a minute): $(VERSITYGW_INSTALL)"; $(VERSITYGW_INSTALL); }

# check: gofmt, vet, and generated templates that match their sources.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>&1); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool templ generate >/dev/null 2>&1
	@stale="$$(git diff --name-only -- '*_templ.go'; git ls-files --others --exclude-standard -- '*_templ.go')"; \
	if [ -n "$$stale" ]; then echo "generated templates are stale: run 'go tool templ generate' and commit:"; echo "$$stale"; exit 1; fi

generate:
	$(GO) tool templ generate

# run: one replica, memory sessions, like `go run ./cmd/shop`.
run:
	$(GO) run ./cmd/shop

# cluster: nginx on 127.0.0.1:$(PORT) in front of shop1..3 ($(PORT)+1..+3)
# and Redis ($(PORT)-1701), the Procfile under goreman (its RPC on
# 127.0.0.1:$(PORT)+475). cmd/cluster checks the knobs and the ports before
# anything starts, and stops the whole cluster if a process dies at start.
# and the object store (versitygw, $(PORT)-1010).
#   make cluster PROFILE=stateful|stateless STORE=redis|memory|cookie LB=roundrobin|sticky LOCK=on|off UPLOADS=disk|s3 PORT=8080 LOG=warn|info
# PROFILE presets every state flag of the replicas (-profile); STORE, LB and
# UPLOADS follow it (stateful: memory, sticky, disk; stateless: redis,
# roundrobin, s3) unless given.
# STORE=cookie generates a session key per start and prints it (or takes
# SHOP_SESSION_KEYS from the environment).
CLUSTER_ENV = PROFILE=$(PROFILE) STORE=$(STORE) LB=$(LB) LOCK=$(LOCK) UPLOADS=$(UPLOADS) PORT=$(PORT) LOG=$(LOG)
cluster:
	@mkdir -p .run/bin
	@$(GO) build -o .run/bin/cluster ./cmd/cluster
	@$(CLUSTER_ENV) .run/bin/cluster -check
	@$(MAKE) --no-print-directory deps
	$(GO) build -o .run/bin/shop ./cmd/shop
	$(GO) build -o .run/bin/goreman github.com/mattn/goreman
	$(CLUSTER_ENV) .run/bin/cluster -goreman .run/bin/goreman -shop .run/bin/shop

# bench: nginx + 3 replicas + Redis against the /healthz limit, memory and
# redis sessions side by side, with the scaling curves, and the price of
# statelessness (-profile stateful vs stateless); prints the table, writes
# docs/benchmarks.md (keeping its hand-written analysis) and the figures
# /state embeds (state/price/measured.json).
bench: deps
	BENCH_COMMAND="$${BENCH_COMMAND:-make bench}" $(GO) run ./scenarios/bench/cmd/bench -doc docs/benchmarks.md -price state/price/measured.json

# benchcmp: the Go benchmarks of the hot handlers and session stores,
# compared with benchstat against docs/bench-baseline.txt (make
# bench-baseline records a new one).
BENCH_COUNT ?= 6
benchcmp: deps
	mkdir -p .run
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./web/ > .run/bench-new.txt
	$(GO) tool benchstat docs/bench-baseline.txt .run/bench-new.txt

bench-baseline: deps
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./web/ > docs/bench-baseline.txt

# screenshots: the README's images (docs/img), taken by Chromium through a
# real cluster by scenarios/e2e's TestScreenshots, and a scenario report of
# the memory-session failover. Commit them afterwards.
.PHONY: screenshots
screenshots: deps
	mkdir -p .run
	$(GO) run ./scenarios run failover -store memory -lb sticky -report .run/scenario-report.html || test -s .run/scenario-report.html
	SHOP_SCENARIO_REPORT=$(CURDIR)/.run/scenario-report.html SHOP_SCREENSHOTS=$(CURDIR)/docs/img SHOP_TEST_REQUIRE=all \
		$(GO) test -count=1 -run '^TestScreenshots$$' -v ./scenarios/e2e/

clean:
	rm -rf .run
