//! What every benchmark's final line shares: the machine's load beside the figures (this machine is shared, and a
//! figure without its load cannot be compared), and the binaries of the benchmark's own build (a benchmark that
//! measured a stale or debug binary would print a figure for code it did not build).

use std::path::PathBuf;

/// `load=<1 min>,<5 min>,<15 min> cores=<n>` from `/proc/loadavg`, for the end of a final line; `load=unknown`
/// when it cannot be read.
pub fn load_field() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|load| !load.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("load={load} cores={cores}")
}

/// The directory the running benchmark was built into (`target/<profile>`: its executable sits in `deps/` under
/// it), where the same `cargo build --benches --bins` put the workspace's binaries.
pub fn own_build_dir() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|error| format!("the benchmark's executable: {error}"))?;
    exe.parent()
        .filter(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} is not in a cargo target's deps/", exe.display()))
}

/// The binary `name` of the running benchmark's build (`make bench` builds them in one `cargo build`, so cargo
/// keeps them current together), never a debug one; an error naming the command when it is missing.
pub fn own_binary(name: &str) -> Result<PathBuf, String> {
    let binary = own_build_dir()?.join(name);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is missing: `make bench-build` builds it with the benchmarks",
            binary.display()
        ))
    }
}
