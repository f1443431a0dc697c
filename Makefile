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

## Every test: unit, adapters against real servers/namespaces/loop devices, end to end on the simulated fleet;
## each test binary under its own timeout, the time of each printed at the end (scripts/run-tests.py).
test: build
	./scripts/run-tests.py

lint:
	$(CARGO) fmt --all -- --check
	./scripts/longest-functions.py --limit 80
	$(CARGO) clippy --workspace --all-targets -- -D warnings

BENCHES := claim-storm claim-storm-fleet route storage kafka-probe aws tth replace kafka-replace roll footprint

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

bench-tth bench-replace: build
	$(CARGO) bench -p berth-sim --bench $(subst bench-,,$@)

## Broker 0 of a three-broker KRaft fleet on Apache Kafka killed and replaced: time to Healthy and to a full ISR,
## bytes re-fetched with its own volume and with a blank one (the control), berth's own overhead.
bench-kafka-replace: build
	$(CARGO) bench -p berth-sim --bench kafka_replace

## The cluster upgraded: an instance refresh of each zone's group in turn on a three-broker KRaft fleet with a
## producer running (acks=all, RF 3, min.insync.replicas=2): total and per-step time, failed produces, lost records.
bench-roll: build
	$(CARGO) bench -p berth-sim --bench roll

## Footprint is measured on the binary the package ships (the `dist` profile: opt-level s, thin LTO).
bench-footprint: build
	$(CARGO) build --profile dist -p berth -p kafka-standin
	BERTHSIM_BIN_DIR=$(CURDIR)/target/dist $(CARGO) bench -p berth-sim --bench footprint

## The claim storm on the simulated region's ensemble (the one the fleet's hosts claim on).
bench-claim-storm-fleet: build
	$(CARGO) bench -p berth-sim --bench claim_storm_fleet

## The Debian package (workspace `release` profile); `scripts/ci-ops.sh --dist` builds the shipping `dist` one.
deb: setup
	command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb --version 3.8.0
	$(CARGO) deb -p berth --locked
