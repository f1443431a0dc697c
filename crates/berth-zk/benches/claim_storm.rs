//! Claim storm: N claimers boot at once against a real 3-node ZooKeeper ensemble and claim N ids.
//!
//! A mass event (an AZ lost, dozens of hosts booting together) must not produce duplicate ids nor a storm of
//! requests: claimers read the claims once and try free ids in an order rotated per host. Reports duplicates
//! (ids claimed by two claimers, or whose znode is not owned by the claimer's session), claim latency
//! (session opening included) and ZooKeeper requests per claim (every request berth's code sends: listings,
//! creates, reads, deletes; session handshakes are reported separately as sessions_per_claim).
//!
//! `CLAIMERS` sets N (default 100); ids are `0..max(N, 100)`. The ensemble is warmed up by one unreported storm
//! first (its numbers go to stderr).
//!
//! The same line reports the `ec2` backend (claims as ENI attachments, no ZooKeeper) against strict moto:
//! `EC2_CLAIMERS` claimers (default 30) on `EC2_IDS` ids (default 10), fields prefixed `ec2_` (see
//! berth-aws `benches/ec2_storm`).

#[path = "../../berth-aws/tests/common/mod.rs"]
mod common;
#[path = "../../berth-aws/benches/ec2_storm/mod.rs"]
mod ec2_storm;
mod storm;

use berth_testkit::zk::ZooKeeper;

fn main() {
    let claimers: usize = std::env::var("CLAIMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let ids = claimers.max(100) as u32;
    let ensemble = ZooKeeper::ensemble(3).expect("start a 3-node ZooKeeper ensemble");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A production ensemble has been serving for a while; a JVM started a second ago has not loaded or compiled
    // its request path yet. The first storm warms it up and is reported on stderr only.
    let cold = runtime.block_on(storm::storm(
        "claim-storm",
        &ensemble.connect_string(),
        claimers,
        ids,
        "cold",
    ));
    eprintln!("(cold ensemble, first storm: {cold})");
    let warm = runtime.block_on(storm::storm(
        "claim-storm",
        &ensemble.connect_string(),
        claimers,
        ids,
        "storm",
    ));
    let env_or = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let ec2 = runtime.block_on(ec2_storm::storm(
        env_or("EC2_CLAIMERS", 30),
        env_or("EC2_IDS", 10),
    ));
    println!("{warm} {ec2} {}", berth_testkit::bench::load_field());
}
