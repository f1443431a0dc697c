# berth: the two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: setup demo test lint build shipped bench bench-build deb

setup:
	./scripts/setup.sh

## Every binary in debug. The e2e crate turns berth's `failpoints` feature on, so this berth has crash points: only
## the suites that inject crashes (crash_in_every_state) install it.
build: setup
	$(CARGO) build --workspace --bins

## The shipped berth (target/release/berth), built as cargo-deb builds it for `cargo deb -p berth --locked` (its
## command, word for word: the `release` profile, berth's package and binary alone, so without crash points). The
## simulated hosts install the .deb made of it (FleetOptions::berth: BerthBuild::Shipped, the default), and
## scripts/ci-ops.sh's `cargo deb` finds it built (`--reuse-build` fails if it compiles anything). Keep in step
## with berth_sim::fleet::SHIPPED_BUILD_COMMAND (what a suite that cannot find it says).
shipped: setup
	$(CARGO) build --manifest-path crates/berth/Cargo.toml --release --locked --bin=berth

## The main job on an embedded default: a simulated region (strict moto + ZooKeeper ensemble + hosts in
## network namespaces), three brokers booted, one killed and replaced.
demo: build shipped
	./target/debug/berth-sim demo

## Every test: unit, adapters against real servers/namespaces/loop devices, end to end on the simulated fleet;
## each test binary under its own timeout, the time of each printed at the end (scripts/run-tests.py). The hosts run
## the shipped berth (release, no crash points); crash_in_every_state alone runs the debug one with crash points.
test: build shipped
	./scripts/run-tests.py

lint:
	$(CARGO) fmt --all -- --check
	./scripts/longest-functions.py --limit 80
	$(CARGO) clippy --workspace --all-targets -- -D warnings

BENCHES := claim-storm claim-storm-fleet route storage kafka-probe aws tth replace kafka-replace roll footprint

## All benchmarks; each prints one final line `<name> key=value ... load=<1,5,15 min> cores=<n>` and exits non-zero
## when it cannot measure, which fails `make bench` (docs/benchmarks.md defines every figure).
bench: $(addprefix bench-,$(BENCHES))

## One optimised build (the `release` profile) of every benchmark and every binary they run, reused by each
## bench-<name>: a benchmark runs the berth and stand-in of its own build (target/release), never the debug ones.
## berth-e2e is left out: it turns berth's `failpoints` on, which the shipped binary never has. One invocation,
## so cargo resolves the features once and `cargo bench` below finds everything built.
BENCH_CARGO_ARGS := --workspace --exclude berth-e2e
bench-build: setup
	$(CARGO) build --release $(BENCH_CARGO_ARGS) --bins --benches

RUN_BENCH := $(CARGO) bench $(BENCH_CARGO_ARGS) --bench

bench-claim-storm: bench-build
	$(RUN_BENCH) claim_storm

bench-route: bench-build
	$(RUN_BENCH) route

bench-storage: bench-build
	$(RUN_BENCH) storage

bench-kafka-probe: bench-build
	$(RUN_BENCH) kafka_probe

bench-aws: bench-build
	$(RUN_BENCH) aws

bench-tth bench-replace: bench-build
	$(RUN_BENCH) $(subst bench-,,$@)

## Broker 0 of a three-broker KRaft fleet on Apache Kafka killed and replaced: time to Healthy and to a full ISR,
## bytes re-fetched with its own volume and with a blank one (the control), berth's own overhead.
bench-kafka-replace: bench-build
	$(RUN_BENCH) kafka_replace

## The cluster upgraded: an instance refresh of each zone's group in turn on a three-broker KRaft fleet with a
## producer running (acks=all, RF 3, min.insync.replicas=2): total and per-step time, failed produces, lost records.
bench-roll: bench-build
	$(RUN_BENCH) roll

## Footprint is measured on the binary the package ships (the `dist` profile: opt-level s, thin LTO).
bench-footprint: bench-build
	$(CARGO) build --profile dist -p berth -p kafka-standin
	BERTHSIM_BIN_DIR=$(CURDIR)/target/dist $(RUN_BENCH) footprint

## The claim storm on the simulated region's ensemble (the one the fleet's hosts claim on).
bench-claim-storm-fleet: bench-build
	$(RUN_BENCH) claim_storm_fleet

## The Debian package (workspace `release` profile); `scripts/ci-ops.sh --dist` builds the shipping `dist` one.
deb: setup
	command -v cargo-deb >/dev/null || $(CARGO) install --locked cargo-deb --version 3.8.0
	$(CARGO) deb -p berth --locked
