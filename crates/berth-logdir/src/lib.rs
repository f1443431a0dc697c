//! What a Kafka log dir holds, as berth reads it: is the mounted volume this broker's, of this cluster? And is a
//! log dir blank?
//!
//! Kafka writes `meta.properties` into each log dir: in ZooKeeper mode the first time it uses it (version 0,
//! `broker.id`), in KRaft mode when its storage tool formats it (version 1, `node.id` and `directory.id`);
//! `cluster.id` in both. A volume whose file names another broker or cluster is the wrong volume: starting
//! Kafka on it would serve another broker's data (or have Kafka refuse, after berth had already reported
//! progress). A log dir without the file is a fresh volume and fine here; in KRaft mode the Kafka adapter then
//! formats it, but only when [`classify`] finds every log dir blank, never one holding data.
//!
//! Two adapters read it, so it is a crate of its own: berth-storage checks the identity when it mounts
//! ([`check`]), berth-kafka decides whether KRaft storage may be formatted ([`classify`]) and confirms that it
//! was ([`read`]). Neither depends on the other.
//!
//! The check only reads. berth never creates the log dirs or writes `meta.properties` itself: Kafka (or its
//! storage tool) does, so the volume's contents stay Kafka's alone. This crate holds berth's one reader of
//! Java properties text ([`parse`]), the format `meta.properties` is written in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::{BrokerId, Classify, ErrorKind};

/// A log dir that cannot be read, or whose `meta.properties` is not this broker's.
#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    /// An operating-system call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done (`read`, `list`).
        operation: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A log dir was to be cleared of an interrupted format's files but holds something else.
    #[error("{path} holds more than an interrupted format leaves ({found}): not touched")]
    NotInterrupted {
        /// The log dir.
        path: PathBuf,
        /// What it was found to hold.
        found: String,
    },
    /// A log dir's `meta.properties` names another broker or cluster: this is not this broker's volume.
    #[error("{path}: {key} is {found} but {expected_what} is {expected}; this volume is not this broker's, refusing to use it")]
    ForeignMeta {
        /// The meta.properties file.
        path: PathBuf,
        /// `broker.id`, `node.id` or `cluster.id`.
        key: &'static str,
        /// The value on the volume.
        found: String,
        /// What it was compared with (`the claimed broker id`, `cluster.kafka_cluster_id`, or another log dir's file).
        expected_what: String,
        /// The value expected.
        expected: String,
    },
    /// A `meta.properties` that cannot be understood (a non-numeric id).
    #[error("{path}: {key} = {value:?} is not a broker id")]
    BadMeta {
        /// The meta.properties file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

impl LogDirError {
    fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

impl Classify for LogDirError {
    /// An I/O error may pass; a volume that is not this broker's never does.
    fn kind(&self) -> ErrorKind {
        match self {
            LogDirError::Io { .. } => ErrorKind::Retryable,
            LogDirError::ForeignMeta { .. }
            | LogDirError::BadMeta { .. }
            | LogDirError::NotInterrupted { .. } => ErrorKind::Fatal,
        }
    }
}

/// The file Kafka stamps on each log dir.
pub const META_FILE: &str = "meta.properties";

/// An entry mkfs.ext4 creates at a filesystem's root; empty, it holds no Kafka data.
const LOST_FOUND: &str = "lost+found";

/// The metadata log's directory in a KRaft log dir.
const METADATA_LOG: &str = "__cluster_metadata-0";

/// What Kafka's storage tool (Kafka 3.9-4.x, `metadata/.../storage/Formatter.java`) writes into a log dir
/// before `meta.properties`, and so all an interrupted format can leave: `meta.properties` through a `.tmp`
/// file (`PropertiesUtils.writePropertiesFile`), the bootstrap metadata as `bootstrap.checkpoint` through a
/// `.tmp` file (`BootstrapDirectory`, 3.x), and the metadata log's directory holding the bootstrap snapshot
/// `00000000000000000000-0000000000.checkpoint`, written through a `<same>…checkpoint.part` temporary file
/// (`Snapshots.createTempFile`). Kafka's first start adds log segments, `quorum-state`, `partition.metadata`
/// and checkpoints of its own, none of which is here: a dir holding only these has never held records.
const FORMAT_LEFTOVERS: [&str; 3] = [
    "meta.properties.tmp",
    "bootstrap.checkpoint",
    "bootstrap.checkpoint.tmp",
];
/// The bootstrap snapshot's name (offset 0, epoch 0: `Snapshots.BOOTSTRAP_SNAPSHOT_ID`).
const BOOTSTRAP_SNAPSHOT: &str = "00000000000000000000-0000000000";

/// The identity keys read from one log dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaIdentity {
    /// The file read.
    pub path: PathBuf,
    /// `version`: 0 (ZooKeeper mode, `broker.id`) or 1 (KRaft, `node.id`), when present.
    pub version: Option<String>,
    /// `broker.id`, when present.
    pub broker_id: Option<String>,
    /// `node.id`, when present.
    pub node_id: Option<String>,
    /// `cluster.id`, when present.
    pub cluster_id: Option<String>,
    /// `directory.id` (KIP-858, written by Kafka 3.7 and later in KRaft mode), when present.
    pub directory_id: Option<String>,
}

/// Settings as read from Java properties text; a later key replaces an earlier one.
pub type Properties = BTreeMap<String, String>;

/// Parses Java properties text as `java.util.Properties.load` does for the forms Kafka writes and operators
/// use: `#`/`!` comments, `=`/`:`/blank separators, backslash escapes (`\\`, `\t`, `\n`, `\r`, `\f`, `\uXXXX`,
/// escaped separators) and backslash line continuations. The text is taken as already decoded (Kafka's files
/// are ISO-8859-1; what it writes is ASCII, anything else escaped).
pub fn parse(text: &str) -> Properties {
    let mut properties = Properties::new();
    let mut logical = String::new();
    let mut continuing = false;
    for raw in text.lines() {
        let line = raw.trim_start();
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let (body, continues) = strip_continuation(line);
        logical.push_str(body);
        continuing = continues;
        if !continuing {
            let (key, value) = split_entry(&logical);
            properties.insert(key, value);
            logical.clear();
        }
    }
    if continuing && !logical.is_empty() {
        let (key, value) = split_entry(&logical);
        properties.insert(key, value);
    }
    properties
}

/// A line ending in an odd number of backslashes continues on the next line.
fn strip_continuation(line: &str) -> (&str, bool) {
    let trailing = line.bytes().rev().take_while(|&b| b == b'\\').count();
    if trailing % 2 == 1 {
        (&line[..line.len() - 1], true)
    } else {
        (line, false)
    }
}

fn split_entry(line: &str) -> (String, String) {
    let mut chars = line.char_indices();
    let mut key_end = line.len();
    let mut value_start = line.len();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '=' | ':' => {
                key_end = index;
                value_start = index + 1;
                break;
            }
            c if c.is_whitespace() => {
                key_end = index;
                // Blanks, then optionally one `=` or `:`, then blanks separate key and value.
                let trimmed = line[index..].trim_start();
                let after_blank = line.len() - trimmed.len();
                value_start = if trimmed.starts_with(['=', ':']) {
                    after_blank + 1
                } else {
                    after_blank
                };
                break;
            }
            _ => {}
        }
    }
    let key = unescape(&line[..key_end]);
    let value = unescape(line[value_start..].trim_start());
    (key, value)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut units: Vec<u16> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // `\uXXXX` escapes are UTF-16 code units: a character outside the BMP is a pair of them.
        if c == '\\' && chars.peek() == Some(&'u') {
            chars.next();
            let hex: String = chars.by_ref().take(4).collect();
            match u16::from_str_radix(&hex, 16) {
                Ok(unit) => units.push(unit),
                Err(_) => {
                    out.push_str("\\u");
                    out.push_str(&hex);
                }
            }
            continue;
        }
        if !units.is_empty() {
            out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out.extend(char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or('\u{fffd}')));
    out
}

/// Reads `<log_dir>/meta.properties`; `None` when the dir or the file does not exist.
pub fn read(log_dir: &Path) -> Result<Option<MetaIdentity>, LogDirError> {
    let path = log_dir.join(META_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LogDirError::io("read", path, error)),
    };
    // ISO-8859-1, as Java reads properties files: every byte is the character of the same number.
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let mut keys = parse(&text);
    Ok(Some(MetaIdentity {
        version: keys.remove("version"),
        broker_id: keys.remove("broker.id"),
        node_id: keys.remove("node.id"),
        cluster_id: keys.remove("cluster.id"),
        directory_id: keys.remove("directory.id"),
        path,
    }))
}

/// What one log dir holds, for the decision to format KRaft storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDirState {
    /// The dir does not exist (a blank volume berth just formatted has no log dirs yet).
    Absent,
    /// The dir exists and is empty (an empty `lost+found` counts as empty).
    Empty,
    /// The dir carries `meta.properties`.
    Formatted(MetaIdentity),
    /// The dir holds only what an interrupted run of Kafka's storage tool leaves ([`clear_interrupted_format`]
    /// removes exactly that): no records, nothing Kafka wrote at a start.
    InterruptedFormat {
        /// Its entries (in the metadata log's dir too), relative to the log dir.
        entries: Vec<String>,
    },
    /// The dir holds something but no `meta.properties`: data Kafka did not stamp, never to be formatted.
    Unstamped {
        /// Up to five of its entries, to name in the refusal.
        entries: Vec<String>,
    },
}

impl LogDirState {
    /// Absent, empty, or holding only an interrupted format's files: nothing would be lost by formatting it.
    pub fn is_blank(&self) -> bool {
        matches!(
            self,
            LogDirState::Absent | LogDirState::Empty | LogDirState::InterruptedFormat { .. }
        )
    }
}

/// Looks at one log dir without changing it.
pub fn classify(log_dir: &Path) -> Result<LogDirState, LogDirError> {
    if let Some(meta) = read(log_dir)? {
        return Ok(LogDirState::Formatted(meta));
    }
    let listing = match std::fs::read_dir(log_dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogDirState::Absent)
        }
        Err(error) => return Err(LogDirError::io("list", log_dir, error)),
    };
    let mut entries = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|error| LogDirError::io("list", log_dir, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == LOST_FOUND && is_empty_dir(&entry.path())? {
            continue;
        }
        entries.push(name);
    }
    if entries.is_empty() {
        return Ok(LogDirState::Empty);
    }
    entries.sort();
    if let Some(entries) = interrupted_format(log_dir, &entries)? {
        return Ok(LogDirState::InterruptedFormat { entries });
    }
    entries.truncate(5);
    Ok(LogDirState::Unstamped { entries })
}

/// The entries of a log dir without `meta.properties` when they are only what an interrupted format leaves
/// ([`FORMAT_LEFTOVERS`]), with the metadata log's dir's entries as `__cluster_metadata-0/<name>`.
fn interrupted_format(
    log_dir: &Path,
    entries: &[String],
) -> Result<Option<Vec<String>>, LogDirError> {
    let mut found = Vec::new();
    for name in entries {
        if FORMAT_LEFTOVERS.contains(&name.as_str()) && log_dir.join(name).is_file() {
            found.push(name.clone());
            continue;
        }
        if name != METADATA_LOG {
            return Ok(None);
        }
        let metadata = log_dir.join(name);
        let listing = match std::fs::read_dir(&metadata) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
            Err(error) => return Err(LogDirError::io("list", metadata, error)),
        };
        found.push(format!("{METADATA_LOG}/"));
        for entry in listing {
            let entry = entry.map_err(|error| LogDirError::io("list", &metadata, error))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let snapshot = file == format!("{BOOTSTRAP_SNAPSHOT}.checkpoint")
                || (file.starts_with(BOOTSTRAP_SNAPSHOT) && file.ends_with(".checkpoint.part"));
            if !snapshot || !entry.path().is_file() {
                return Ok(None);
            }
            found.push(format!("{METADATA_LOG}/{file}"));
        }
    }
    Ok(Some(found))
}

/// Removes what an interrupted format left in `log_dir` (as [`classify`] found it, looking again first) and
/// nothing else: each named file, then the metadata log's dir only if that leaves it empty. A dir that holds
/// anything else is refused, untouched.
pub fn clear_interrupted_format(log_dir: &Path) -> Result<Vec<String>, LogDirError> {
    let entries = match classify(log_dir)? {
        LogDirState::InterruptedFormat { entries } => entries,
        LogDirState::Absent | LogDirState::Empty => return Ok(Vec::new()),
        other => {
            return Err(LogDirError::NotInterrupted {
                path: log_dir.to_owned(),
                found: format!("{other:?}"),
            })
        }
    };
    for entry in entries.iter().filter(|entry| !entry.ends_with('/')) {
        let path = log_dir.join(entry);
        std::fs::remove_file(&path).map_err(|error| LogDirError::io("remove", path, error))?;
    }
    let metadata = log_dir.join(METADATA_LOG);
    if entries.iter().any(|entry| entry.ends_with('/')) {
        std::fs::remove_dir(&metadata)
            .map_err(|error| LogDirError::io("remove", metadata, error))?;
    }
    Ok(entries)
}

fn is_empty_dir(path: &Path) -> Result<bool, LogDirError> {
    match std::fs::read_dir(path) {
        Ok(mut listing) => Ok(listing.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
        Err(error) => Err(LogDirError::io("list", path, error)),
    }
}

/// Checks every log dir: ids must equal the claimed id, `cluster.id` the configured one (when configured) and
/// the log dirs must agree with each other. Returns what was read.
pub fn check(
    log_dirs: &[PathBuf],
    broker_id: BrokerId,
    cluster_id: Option<&str>,
) -> Result<Vec<MetaIdentity>, LogDirError> {
    let mut seen = Vec::new();
    let mut first_cluster: Option<(String, PathBuf)> = None;
    for dir in log_dirs {
        let Some(meta) = read(dir)? else { continue };
        for (key, value) in [("broker.id", &meta.broker_id), ("node.id", &meta.node_id)] {
            let Some(value) = value else { continue };
            let parsed: u32 = value.parse().map_err(|_| LogDirError::BadMeta {
                path: meta.path.clone(),
                key,
                value: value.clone(),
            })?;
            if parsed != broker_id.0 {
                return Err(LogDirError::ForeignMeta {
                    path: meta.path.clone(),
                    key,
                    found: value.clone(),
                    expected_what: "the claimed broker id".into(),
                    expected: broker_id.to_string(),
                });
            }
        }
        if let Some(found) = &meta.cluster_id {
            if let Some(expected) = cluster_id.filter(|expected| expected != found) {
                return Err(LogDirError::ForeignMeta {
                    path: meta.path.clone(),
                    key: "cluster.id",
                    found: found.clone(),
                    expected_what: "cluster.kafka_cluster_id".into(),
                    expected: expected.to_owned(),
                });
            }
            match &first_cluster {
                Some((other, other_path)) if other != found => {
                    return Err(LogDirError::ForeignMeta {
                        path: meta.path.clone(),
                        key: "cluster.id",
                        found: found.clone(),
                        expected_what: format!("cluster.id in {}", other_path.display()),
                        expected: other.clone(),
                    });
                }
                Some(_) => {}
                None => first_cluster = Some((found.clone(), meta.path.clone())),
            }
        }
        seen.push(meta);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.properties"), text).unwrap();
        dir
    }

    #[test]
    fn missing_file_or_dir_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf(), dir.path().join("absent")];
        assert_eq!(check(&dirs, BrokerId(1), Some("abc")).unwrap(), vec![]);
    }

    #[test]
    fn matching_ids_pass_and_foreign_ones_name_both_values() {
        let ours = dir_with("#Tue\nversion=0\nbroker.id=2\ncluster.id=Zq9\n");
        assert_eq!(
            check(&[ours.path().into()], BrokerId(2), Some("Zq9"))
                .unwrap()
                .len(),
            1
        );
        let error = check(&[ours.path().into()], BrokerId(5), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("broker.id is 2") && error.contains("is 5"),
            "{error}"
        );
        assert!(
            error.contains(&ours.path().join("meta.properties").display().to_string()),
            "{error}"
        );

        let kraft = dir_with("version=1\nnode.id=7\ncluster.id=Other\n");
        let error = check(&[kraft.path().into()], BrokerId(7), Some("Zq9"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cluster.id is Other") && error.contains("Zq9"),
            "{error}"
        );
        let error = check(
            &[ours.path().into(), kraft.path().into()],
            BrokerId(2),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("node.id is 7"), "{error}");
    }

    #[test]
    fn log_dirs_must_agree_on_the_cluster() {
        let a = dir_with("broker.id=3\ncluster.id=A\n");
        let b = dir_with("broker.id=3\ncluster.id=B\n");
        let error = check(&[a.path().into(), b.path().into()], BrokerId(3), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cluster.id is B") && error.contains("is A"),
            "{error}"
        );
    }

    #[test]
    fn kraft_meta_properties_version_1_with_a_directory_id_is_this_brokers() {
        // As Kafka 4.4's storage tool writes it (measured).
        let dir = dir_with(
            "#\n#Tue Dec 01 04:21:00 UTC 2026\nnode.id=1\ndirectory.id=nL10qEMsD-0SnRmf7nY11w\nversion=1\n\
             cluster.id=MkU3OEVBNTcwNTJENDM2Qg\n",
        );
        let seen = check(
            &[dir.path().into()],
            BrokerId(1),
            Some("MkU3OEVBNTcwNTJENDM2Qg"),
        )
        .unwrap();
        assert_eq!(seen[0].version.as_deref(), Some("1"));
        assert_eq!(
            seen[0].directory_id.as_deref(),
            Some("nL10qEMsD-0SnRmf7nY11w")
        );
        let error = check(&[dir.path().into()], BrokerId(2), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("node.id is 1"), "{error}");
    }

    #[test]
    fn reads_the_properties_forms_java_reads() {
        let text = "# comment\n! also a comment\n\nbroker.id=1\nlisteners = PLAINTEXT://:9092\n\
                    log.dirs:/a,\\\n    /b\nzookeeper.connect 10.0.0.1:2181/kafka\nbroker.id=2\n\
                    escaped\\=key=x\\ty\nrack=zone-\\u00e4\\ud83d\\ude00\n";
        let properties = parse(text);
        assert_eq!(properties["broker.id"], "2", "a later key wins");
        assert_eq!(properties["listeners"], "PLAINTEXT://:9092");
        assert_eq!(properties["log.dirs"], "/a,/b");
        assert_eq!(properties["zookeeper.connect"], "10.0.0.1:2181/kafka");
        assert_eq!(properties["escaped=key"], "x\ty");
        assert_eq!(
            properties["rack"], "zone-\u{e4}\u{1f600}",
            "UTF-16 escapes, a surrogate pair too"
        );
    }

    #[test]
    fn log_dirs_are_classified_without_being_changed() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            classify(&root.path().join("absent")).unwrap(),
            LogDirState::Absent
        );
        let empty = root.path().join("empty");
        std::fs::create_dir_all(empty.join(LOST_FOUND)).unwrap();
        assert_eq!(
            classify(&empty).unwrap(),
            LogDirState::Empty,
            "an empty lost+found holds nothing"
        );
        std::fs::write(empty.join(LOST_FOUND).join("#1234"), "recovered").unwrap();
        assert!(
            matches!(classify(&empty).unwrap(), LogDirState::Unstamped { .. }),
            "a non-empty one does"
        );
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("events-0")).unwrap();
        let state = classify(&data).unwrap();
        assert_eq!(
            state,
            LogDirState::Unstamped {
                entries: vec!["events-0".into()]
            }
        );
        assert!(!state.is_blank());
        std::fs::write(data.join(META_FILE), "version=1\nnode.id=3\n").unwrap();
        let LogDirState::Formatted(meta) = classify(&data).unwrap() else {
            panic!("formatted")
        };
        assert_eq!(meta.node_id.as_deref(), Some("3"));
    }

    #[test]
    fn garbage_ids_are_refused() {
        let dir = dir_with("broker.id=seven\n");
        assert!(matches!(
            check(&[dir.path().into()], BrokerId(7), None),
            Err(LogDirError::BadMeta { .. })
        ));
    }

    #[test]
    fn what_an_interrupted_format_leaves_is_recognised_and_cleared_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let metadata = dir.join(METADATA_LOG);
        std::fs::create_dir_all(&metadata).unwrap();
        // Kafka 4.4 killed while writing: the bootstrap snapshot's temporary file, meta.properties' .tmp.
        let part = format!("{BOOTSTRAP_SNAPSHOT}8120476159071183651.checkpoint.part");
        std::fs::write(metadata.join(&part), b"partial").unwrap();
        std::fs::write(dir.join("meta.properties.tmp"), b"version=1").unwrap();
        let state = classify(&dir).unwrap();
        assert_eq!(
            state,
            LogDirState::InterruptedFormat {
                entries: vec![
                    format!("{METADATA_LOG}/"),
                    format!("{METADATA_LOG}/{part}"),
                    "meta.properties.tmp".into()
                ]
            }
        );
        assert!(state.is_blank());
        // The finished snapshot alone (killed before meta.properties) is an interrupted format too.
        std::fs::write(
            metadata.join(format!("{BOOTSTRAP_SNAPSHOT}.checkpoint")),
            b"snapshot",
        )
        .unwrap();
        assert!(matches!(
            classify(&dir).unwrap(),
            LogDirState::InterruptedFormat { .. }
        ));
        // Anything Kafka writes when it runs makes it data: a log segment, quorum-state, another partition.
        for (path, what) in [
            (metadata.join("00000000000000000000.log"), "a log segment"),
            (metadata.join("quorum-state"), "the quorum state"),
            (dir.join("events-0"), "a partition"),
            (dir.join("bootstrap.checkpoint.old"), "an unknown file"),
        ] {
            std::fs::write(&path, b"x").unwrap();
            assert!(
                matches!(classify(&dir).unwrap(), LogDirState::Unstamped { .. }),
                "{what} is data"
            );
            let refused = clear_interrupted_format(&dir).unwrap_err();
            assert!(
                matches!(refused, LogDirError::NotInterrupted { .. }),
                "{refused}"
            );
            assert!(path.exists(), "{what} untouched");
            std::fs::remove_file(&path).unwrap();
        }
        let cleared = clear_interrupted_format(&dir).unwrap();
        assert_eq!(cleared.len(), 4, "{cleared:?}");
        assert_eq!(classify(&dir).unwrap(), LogDirState::Empty);
        assert_eq!(
            clear_interrupted_format(&dir).unwrap(),
            Vec::<String>::new()
        );
    }
}
