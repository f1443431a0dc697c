//! The man pages and shell completions the package ships (`crates/berth/debian/man`, `debian/completions`) are
//! what the command line generates (clap_mangen, clap_complete), so they never describe another berth.
//! `BERTH_BLESS=1 cargo test --test manpages` writes them anew after the command line changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

fn debian() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("debian")
}

/// Every file the command line generates: `man/<page>.1` and `completions/<file>`, with its text.
fn generated() -> BTreeMap<PathBuf, String> {
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(berth::cli::command(), dir.path()).unwrap();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        files.insert(
            Path::new("man").join(name),
            std::fs::read_to_string(&path).unwrap(),
        );
    }
    for (shell, name) in [
        (Shell::Bash, "berth.bash"),
        (Shell::Zsh, "_berth"),
        (Shell::Fish, "berth.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut berth::cli::command(), "berth", &mut text);
        files.insert(
            Path::new("completions").join(name),
            String::from_utf8(text).unwrap(),
        );
    }
    files
}

/// The files under `debian/<dir>` as they are.
fn shipped(dir: &str) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(debian().join(dir)) {
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_owned();
            files.insert(
                Path::new(dir).join(name),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    files
}

#[test]
fn the_shipped_man_pages_and_completions_are_the_command_lines() {
    let generated = generated();
    if std::env::var_os("BERTH_BLESS").is_some() {
        for dir in ["man", "completions"] {
            let _ = std::fs::remove_dir_all(debian().join(dir));
            std::fs::create_dir_all(debian().join(dir)).unwrap();
        }
        for (path, text) in &generated {
            std::fs::write(debian().join(path), text).unwrap();
        }
    }
    let mut in_package = shipped("man");
    in_package.extend(shipped("completions"));
    let shipped = in_package;
    let names = |files: &BTreeMap<PathBuf, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&shipped),
        names(&generated),
        "crates/berth/debian: run BERTH_BLESS=1 cargo test --test manpages"
    );
    for (path, text) in &generated {
        assert!(
            shipped[path] == *text,
            "crates/berth/debian/{} is not what the command line generates: run BERTH_BLESS=1 cargo test --test \
             manpages",
            path.display()
        );
    }
    let page = &generated[Path::new("man/berth.1")];
    for subcommand in ["run", "check\\-config", "status", "drain", "plan"] {
        assert!(page.contains(subcommand), "berth.1 names {subcommand}");
    }
    assert!(
        page.contains("/etc/berth/environment"),
        "berth.1 names the environment file"
    );
}
