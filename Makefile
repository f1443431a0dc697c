# berth: the two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: setup demo test lint build bench deb

setup:
	./scripts/setup.sh

build: setup
	$(CARGO) build --workspace --bins

## The main job on an embedded default: a simulated region (strict moto + ZooKeeper ensemble + hosts in
## network namespaces), three brokers booted, one killed and replaced.
demo: build
	./target/debug/berth-sim demo

## Every test: unit, adapters against real servers/namespaces/loop devices, end to end on the simulated fleet.
test: build
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

BENCHES := claim-storm route storage kafka-probe aws tth replace footprint

## All benchmarks; each prints one final line `<name> key=value ...`.
bench: $(addprefix bench-,$(BENCHES))

bench-claim-storm: setup
	$(CARGO) bench -p berth-zk --bench claim_storm

bench-route: setup
	$(CARGO) bench -p berth-net --bench route

bench-storage: setup
	$(CARGO) bench -p berth-storage --bench storage

bench-kafka-probe: build
	$(CARGO) bench -p berth-kafka --bench kafka_probe

bench-aws: setup
	$(CARGO) bench -p berth-aws --bench aws

bench-tth bench-replace bench-footprint: build
	$(CARGO) bench -p berth-sim --bench $(subst bench-,,$@)

## The Debian package (workspace `release` profile); `scripts/ci-ops.sh --dist` builds the shipping `dist` one.
deb: setup
	command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb --version 3.8.0
	$(CARGO) deb -p berth --locked
