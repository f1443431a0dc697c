//! docs/architecture.md maps every concept to the file that holds it: a path it names that no longer exists sends
//! a new maintainer nowhere. This test finds every repository path the document names (in prose, in code spans
//! and as link targets, with `{a,b}` alternatives and `*` wildcards) and checks that each exists.

use std::path::{Path, PathBuf};

/// The top-level directories a repository path in the docs starts with.
const ROOTS: [&str; 6] = [
    "crates/", "tests/", "docs/", "scripts/", "systemd/", "config/",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_owned()
}

/// The characters a path in the document is made of (anything else ends it).
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./{},*".contains(c)
}

/// Every repository path named in `text`: words starting with one of [`ROOTS`] (resolved from the repository
/// root), and Markdown link targets (resolved from `docs/`, where the document lives).
fn named_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (start, _) in text.char_indices() {
        let rest = &text[start..];
        let boundary = text[..start]
            .chars()
            .next_back()
            .is_none_or(|before| !path_char(before));
        if boundary && ROOTS.iter().any(|root| rest.starts_with(root)) {
            let word: String = rest.chars().take_while(|&c| path_char(c)).collect();
            paths.push(word.trim_end_matches(['.', ',']).to_owned());
        }
        if let Some(target) = rest.strip_prefix("](") {
            let target: String = target.chars().take_while(|&c| c != ')').collect();
            let target = target.split('#').next().unwrap_or_default();
            if !target.is_empty() && !target.contains("://") {
                paths.push(format!("docs/{target}"));
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// `a/{b,c}/d` as `a/b/d` and `a/c/d` (one pair of braces at a time, so nested lists expand too).
fn expand_braces(path: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (path.find('{'), path.find('}')) else {
        return vec![path.to_owned()];
    };
    path[open + 1..close]
        .split(',')
        .flat_map(|choice| {
            expand_braces(&format!("{}{choice}{}", &path[..open], &path[close + 1..]))
        })
        .collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .any(|skip| wildcard(tail, &name[head.len() + skip..]))
        }
    }
}

/// Whether anything exists at `relative` under `root`, a `*` in a component matching any name.
fn exists(root: &Path, relative: &str) -> bool {
    let mut candidates = vec![root.to_owned()];
    for component in Path::new(relative).components() {
        let component = component.as_os_str().to_string_lossy();
        candidates = candidates
            .into_iter()
            .flat_map(|dir| {
                if !component.contains('*') {
                    return vec![dir.join(component.as_ref())];
                }
                std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|entry| wildcard(&component, &entry.file_name().to_string_lossy()))
                    .map(|entry| entry.path())
                    .collect()
            })
            .filter(|path| path.exists())
            .collect();
    }
    !candidates.is_empty()
}

#[test]
fn the_path_finder_reads_prose_code_spans_links_braces_and_wildcards() {
    let text = "see `crates/a/src/{x,y}.rs` and [b](../crates/b/lib.rs#top), crates/*/benches. Also tests/.";
    assert_eq!(
        named_paths(text),
        [
            "crates/*/benches",
            "crates/a/src/{x,y}.rs",
            "docs/../crates/b/lib.rs",
            "tests/",
        ]
    );
    assert_eq!(
        expand_braces("crates/a/src/{x,y}.rs"),
        ["crates/a/src/x.rs", "crates/a/src/y.rs"]
    );
    assert!(wildcard("kafka_*.rs", "kafka_kraft.rs"));
    assert!(!wildcard("kafka_*.rs", "kraft.rs"));
    let root = workspace();
    assert!(exists(&root, "crates/*/Cargo.toml"));
    assert!(!exists(&root, "crates/*/no-such-file"));
}

#[test]
fn every_path_the_architecture_document_names_exists() {
    let root = workspace();
    let text =
        std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let named = named_paths(&text);
    assert!(
        named.len() > 40,
        "the document names only {} paths: {named:?}",
        named.len()
    );
    let missing: Vec<String> = named
        .iter()
        .flat_map(|path| expand_braces(path))
        .filter(|path| !exists(&root, path))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md names paths that do not exist: {missing:?}"
    );
}

/// berth's subcommands, as the docs would name them.
fn subcommands() -> Vec<String> {
    berth::cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

/// Every berth command line `text` gives as an example: in a code span, or on a line of a fenced code block, the
/// words from `berth <subcommand>` to the end of the span or line (a `#` comment, a pipe or `&&` ends it too).
/// Output quoted in a block (`berth drain: draining ...`) does not name a subcommand and is left out.
fn command_lines(text: &str, subcommands: &[String]) -> Vec<String> {
    let mut code = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push(line.to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    let mut commands = Vec::new();
    for piece in code {
        let piece = piece.split(['#', '|']).next().unwrap_or_default();
        let piece = piece.split("&&").next().unwrap_or_default();
        let words: Vec<&str> = piece.split_whitespace().collect();
        for (at, word) in words.iter().enumerate() {
            let names_one = words
                .get(at + 1)
                .is_some_and(|next| subcommands.iter().any(|s| s == next));
            if (*word == "berth" || word.ends_with("/berth")) && names_one {
                commands.push(words[at..].join(" "));
                break;
            }
        }
    }
    commands
}

#[test]
fn command_lines_are_found_in_spans_and_blocks_and_end_at_comments_and_pipes() {
    let subcommands = subcommands();
    let text = "Run `berth plan --json`, then `berth drain: waiting` is output.\n```sh\n\
                berth check-config          # validate\n$ berth status --json | jq .state\n\
                ip netns exec r /usr/bin/berth status --watch\njournalctl -u berth\n```\n";
    assert_eq!(
        command_lines(text, &subcommands),
        [
            "berth plan --json",
            "berth check-config",
            "berth status --json",
            "/usr/bin/berth status --watch"
        ]
    );
}

/// Every berth command line the docs and the README give is one berth's parser accepts (a flag renamed or
/// removed, a subcommand that does not exist, a value it refuses, all fail here).
#[test]
fn every_berth_command_line_in_the_docs_parses() {
    let root = workspace();
    let subcommands = subcommands();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut checked = 0;
    let mut refused = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a doc");
        for line in command_lines(&text, &subcommands) {
            checked += 1;
            let words = std::iter::once("berth").chain(line.split_whitespace().skip(1));
            if let Err(error) = berth::cli::command().try_get_matches_from(words) {
                let why = error.to_string();
                let why = why.lines().next().unwrap_or_default();
                refused.push(format!("{}: `{line}`: {why}", file.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} berth command lines found in the docs"
    );
    assert!(
        refused.is_empty(),
        "command lines the CLI refuses:\n{}",
        refused.join("\n")
    );
}
