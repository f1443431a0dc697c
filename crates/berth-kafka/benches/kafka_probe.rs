//! Benchmark of the serving check (filled in below).
fn main() {}
