//! bench-tth: time to Healthy with injected delays (ENI hot-plug 2 s, volume 3 s, Kafka start 2 s), and berth's
//! own cost on the critical path (`overhead_ms` = time to Healthy - injected delays; API calls included).
//! Three boots of one host (drained between), median reported.

use std::time::Duration;

use berth_sim::bench::{self, injected, median, ms_in};
use nix::sys::signal::Signal;

const RUNS: usize = 3;

fn main() {
    if !bench::can_run("tth") {
        return;
    }
    let result = berth_sim::with_fleet(bench::options(1, 1), |fleet| async move {
        let mut tth = Vec::new();
        let mut last = None;
        for _ in 0..RUNS {
            let host = fleet.launch(0).await?;
            let state = fleet.wait_healthy(host, Duration::from_secs(60)).await?;
            tth.push(state.time_to_healthy_ms.unwrap_or(0));
            print!(
                "{}",
                berth_sim::state::render_timeline(&format!("host {host}"), &state)
            );
            last = Some(state);
            fleet.signal_berth(host, Signal::SIGUSR1)?;
            fleet.wait_berth_exit(host, Duration::from_secs(30)).await?;
            fleet.retire_host(host).await?;
        }
        Ok((tth, last.unwrap_or_else(berth_sim::StateView::empty)))
    });
    match result {
        Ok((tth, state)) => {
            let tth_ms = median(tth.clone());
            let injected_ms = injected().as_millis() as u64;
            println!(
                "tth tth_ms={tth_ms} injected_ms={injected_ms} overhead_ms={} runs={} all_ms={:?} claim_ms={} attach_eni_ms={} route_ms={} attach_ebs_ms={} mount_ms={} start_kafka_ms={} berth={}",
                tth_ms.saturating_sub(injected_ms),
                tth.len(),
                tth,
                ms_in(&state, "claim"),
                ms_in(&state, "attach_eni"),
                ms_in(&state, "route"),
                ms_in(&state, "attach_ebs"),
                ms_in(&state, "mount"),
                ms_in(&state, "start_kafka"),
                bench::berth_profile(),
            );
        }
        Err(error) => println!("tth error={:?}", format!("{error:#}")),
    }
}
