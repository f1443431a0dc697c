//! bench-claim-storm-fleet: the ZooKeeper claim storm (berth-zk's `claim_storm`) run on the simulated region's
//! own 3-node ensemble, from inside the region's network namespace: the ensemble the fleet's hosts claim on,
//! reached over the region's bridges rather than loopback.
//!
//! `CLAIMERS` sets N (default 100). One unreported storm warms the ensemble first (stderr), as in berth-zk.

#[path = "../../berth-zk/benches/storm/mod.rs"]
mod storm;

use anyhow::Context;
use berth_sim::bench;

fn main() {
    if !bench::can_run("claim-storm-fleet") {
        return;
    }
    let claimers: usize = std::env::var("CLAIMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let ids = claimers.max(100) as u32;
    let result = berth_sim::with_fleet(bench::options(3, 3), |fleet| async move {
        let connect = fleet
            .zookeeper()
            .context("the fleet's ZooKeeper ensemble")?
            .connect_string();
        let region = fleet.region().ns().to_owned();
        // Sockets belong to the namespace of the thread that opens them: the storm runs on a runtime whose
        // threads all start inside the region.
        let storm_thread = std::thread::spawn(move || -> anyhow::Result<String> {
            berth_sim::region::enter_netns(&region)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let cold = runtime.block_on(storm::storm(
                "claim-storm-fleet",
                &connect,
                claimers,
                ids,
                "cold",
            ));
            eprintln!("(cold ensemble, first storm: {cold})");
            Ok(runtime.block_on(storm::storm(
                "claim-storm-fleet",
                &connect,
                claimers,
                ids,
                "storm",
            )))
        });
        tokio::task::spawn_blocking(move || storm_thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the storm thread panicked"))?
    });
    match result {
        Ok(line) => println!("{line} {}", berth_testkit::bench::load_field()),
        Err(error) => bench::fail("claim-storm-fleet", &error),
    }
}
