//! Formatting beside the log dirs and renaming into place: an interrupted format leaves nothing half done.
//!
//! Kafka's storage tool writes each log dir's files one after another, `meta.properties` last (`Formatter.java`,
//! `MetaPropertiesEnsemble.Copier`). Run on the log dir itself, a tool killed half way (berth killed, the host
//! lost, a deadline) leaves a dir that is neither blank nor formatted. So berth points the tool at a staging dir
//! beside each log dir ([`dir_beside`], on the same filesystem) and, once every staging dir carries
//! `meta.properties`, renames them into place: the data dirs first, the metadata log's dir last. That last
//! rename commits the format; before it, nothing Kafka could start on is in place.
//!
//! What an interruption can leave, and what the next berth does ([`recover`], then [`prepare`]):
//! * staging dirs, the log dirs blank: discarded (they are berth's own), and the format decided and run again;
//! * the metadata dir renamed in, a data dir still staged: that rename is finished (the format was committed);
//! * data dirs renamed in holding `meta.properties` alone, the metadata dir not: the format was not committed
//!   and Kafka never ran there (Kafka writes its checkpoints into every log dir it starts on), so those
//!   `meta.properties` files are removed and the format runs again;
//! * a log dir holding an interrupted in-place format (an earlier berth's, or a hand-run tool's): only the
//!   files the tool writes are removed (`berth_logdir::clear_interrupted_format`).
//!
//! A log dir holding anything else is never touched: renames go only into an absent or empty dir.

use std::path::{Path, PathBuf};

use berth_logdir::{LogDirState, META_FILE};

use crate::format::FormatError;
use crate::properties::escape_value;

/// The suffix of a staging dir's name.
const STAGING_SUFFIX: &str = ".berth-format";

/// Where the tool formats `log_dir`: `<parent>/.<name>.berth-format`, beside it on the same filesystem.
pub fn dir_beside(log_dir: &Path) -> PathBuf {
    let name = log_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    log_dir.with_file_name(format!(".{name}{STAGING_SUFFIX}"))
}

/// The lines appended to the tool's configuration: the staging dirs as `log.dirs`, and as `metadata.log.dir`
/// when that is set.
pub fn settings(log_dirs: &[PathBuf], metadata_log_dir: Option<&Path>) -> String {
    let staged: Vec<String> = log_dirs
        .iter()
        .map(|dir| dir_beside(dir).display().to_string())
        .collect();
    let mut lines = format!("log.dirs={}\n", escape_value(&staged.join(",")));
    if let Some(dir) = metadata_log_dir {
        lines.push_str(&format!(
            "metadata.log.dir={}\n",
            escape_value(&dir_beside(dir).display().to_string())
        ));
    }
    lines
}

/// Before a format: removes stale staging dirs and what interrupted in-place formats left in the log dirs.
pub fn prepare(log_dirs: &[PathBuf]) -> Result<(), FormatError> {
    for dir in log_dirs {
        let staged = dir_beside(dir);
        match std::fs::remove_dir_all(&staged) {
            Ok(()) => {
                tracing::info!(staging = %staged.display(), "removed an unfinished format's staging dir")
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(rename_error(&staged, dir, source)),
        }
        let cleared = berth_logdir::clear_interrupted_format(dir)?;
        if !cleared.is_empty() {
            tracing::warn!(log_dir = %dir.display(), ?cleared, "removed what an interrupted format left (no records)");
        }
    }
    Ok(())
}

/// Renames every staging dir into its log dir, the metadata log's dir last.
pub fn commit(log_dirs: &[PathBuf], metadata_dir: &Path) -> Result<(), FormatError> {
    let data = log_dirs.iter().filter(|dir| *dir != metadata_dir);
    for dir in data.chain(std::iter::once(&metadata_dir.to_path_buf())) {
        rename_into(dir)?;
    }
    Ok(())
}

fn rename_error(staging: &Path, dir: &Path, source: std::io::Error) -> FormatError {
    FormatError::Rename {
        staging: staging.to_owned(),
        dir: dir.to_owned(),
        source,
    }
}

/// Moves `dir`'s staging dir into it: only into an absent or empty dir (rename(2) replaces an empty one).
fn rename_into(dir: &Path) -> Result<(), FormatError> {
    let staged = dir_beside(dir);
    if !matches!(
        berth_logdir::classify(dir)?,
        LogDirState::Absent | LogDirState::Empty
    ) {
        return Err(rename_error(
            &staged,
            dir,
            std::io::ErrorKind::DirectoryNotEmpty.into(),
        ));
    }
    std::fs::rename(&staged, dir).map_err(|source| rename_error(&staged, dir, source))?;
    if let Some(parent) = dir.parent() {
        // The rename is durable once the parent directory is.
        std::fs::File::open(parent)
            .and_then(|parent| parent.sync_all())
            .map_err(|source| rename_error(&staged, dir, source))?;
    }
    Ok(())
}

/// After an interruption, before anything is looked at: finishes a committed format's renames, or undoes the
/// renames of one that was not committed (module docs). Returns what it did, for the journal.
pub fn recover(log_dirs: &[PathBuf], metadata_dir: &Path) -> Result<Vec<String>, FormatError> {
    let mut done = Vec::new();
    let committed = match berth_logdir::classify(metadata_dir)? {
        LogDirState::Formatted(identity) => Some(identity),
        _ => None,
    };
    for dir in log_dirs.iter().filter(|dir| *dir != metadata_dir) {
        let staged = dir_beside(dir);
        match (&committed, berth_logdir::classify(dir)?) {
            (Some(identity), LogDirState::Absent | LogDirState::Empty) => {
                let Some(staged_identity) = berth_logdir::read(&staged)? else {
                    continue;
                };
                let same = staged_identity.cluster_id == identity.cluster_id
                    && staged_identity.node_id == identity.node_id;
                if same {
                    rename_into(dir)?;
                    done.push(format!(
                        "finished moving the committed format into {}",
                        dir.display()
                    ));
                }
            }
            (None, LogDirState::Formatted(identity)) if holds_only_meta(dir)? => {
                std::fs::remove_file(&identity.path)
                    .map_err(|source| rename_error(&staged, dir, source))?;
                done.push(format!(
                    "removed {} of a format that was never committed (the metadata dir {} is not formatted)",
                    identity.path.display(),
                    metadata_dir.display()
                ));
            }
            _ => {}
        }
    }
    Ok(done)
}

fn holds_only_meta(dir: &Path) -> Result<bool, FormatError> {
    let listing =
        std::fs::read_dir(dir).map_err(|source| rename_error(&dir_beside(dir), dir, source))?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| rename_error(&dir_beside(dir), dir, source))?;
        names.push(entry.file_name());
    }
    Ok(names.len() == 1 && names[0] == *META_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(dir: &Path, meta_text: &str, extra: &[&str]) {
        let staged = dir_beside(dir);
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join(META_FILE), meta_text).unwrap();
        for name in extra {
            std::fs::write(staged.join(name), "x").unwrap();
        }
    }

    const META: &str = "version=1\nnode.id=2\ncluster.id=C\ndirectory.id=D\n";

    #[test]
    fn a_staging_dir_is_a_hidden_sibling_named_after_the_log_dir() {
        assert_eq!(
            dir_beside(Path::new("/var/lib/kafka/data")),
            Path::new("/var/lib/kafka/.data.berth-format")
        );
        let lines = settings(&["/v/a".into(), "/v/b".into()], Some(Path::new("/v/b")));
        assert_eq!(
            lines,
            "log.dirs=/v/.a.berth-format,/v/.b.berth-format\nmetadata.log.dir=/v/.b.berth-format\n"
        );
    }

    #[test]
    fn the_metadata_dir_is_renamed_in_last_and_only_into_a_blank_dir() {
        let root = tempfile::tempdir().unwrap();
        let (meta_dir, data) = (root.path().join("meta"), root.path().join("data"));
        stage(&meta_dir, META, &["checkpoint"]);
        stage(&data, META, &[]);
        std::fs::create_dir_all(&data).unwrap();
        commit(&[meta_dir.clone(), data.clone()], &meta_dir).unwrap();
        assert!(meta_dir.join("checkpoint").exists() && data.join(META_FILE).exists());
        assert!(!dir_beside(&meta_dir).exists() && !dir_beside(&data).exists());

        // A log dir that gained anything meanwhile is not replaced.
        let other = root.path().join("other");
        std::fs::create_dir_all(other.join("events-0")).unwrap();
        stage(&other, META, &[]);
        let error = commit(std::slice::from_ref(&other), &other).unwrap_err();
        assert!(matches!(error, FormatError::Rename { .. }), "{error}");
        assert!(other.join("events-0").exists());
    }

    #[test]
    fn recovery_finishes_a_committed_format_and_undoes_an_uncommitted_one() {
        let root = tempfile::tempdir().unwrap();
        let (meta_dir, data) = (root.path().join("meta"), root.path().join("data"));
        let dirs = [meta_dir.clone(), data.clone()];
        // Interrupted after the metadata dir's rename: the data dir's rename is finished.
        std::fs::create_dir_all(&meta_dir).unwrap();
        std::fs::write(meta_dir.join(META_FILE), META).unwrap();
        stage(&data, META, &[]);
        let done = recover(&dirs, &meta_dir).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(data.join(META_FILE).exists() && !dir_beside(&data).exists());
        // A staged dir of another node is left alone.
        std::fs::remove_dir_all(&data).unwrap();
        stage(&data, "version=1\nnode.id=7\ncluster.id=C\n", &[]);
        assert!(recover(&dirs, &meta_dir).unwrap().is_empty());
        assert!(!data.exists());

        // Interrupted before the metadata dir's rename: the data dir's lone meta.properties goes.
        std::fs::remove_dir_all(&meta_dir).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join(META_FILE), META).unwrap();
        let done = recover(&dirs, &meta_dir).unwrap();
        assert!(done[0].contains("never committed"), "{done:?}");
        assert!(!data.join(META_FILE).exists());
        // One Kafka ran on (anything beside meta.properties) is never touched.
        std::fs::write(data.join(META_FILE), META).unwrap();
        std::fs::write(data.join("recovery-point-offset-checkpoint"), "0\n0\n").unwrap();
        assert!(recover(&dirs, &meta_dir).unwrap().is_empty());
        assert!(data.join(META_FILE).exists());
    }

    #[test]
    fn preparing_removes_stale_staging_and_interrupted_files_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        stage(&dir, META, &["half"]);
        std::fs::create_dir_all(dir.join("__cluster_metadata-0")).unwrap();
        std::fs::write(
            dir.join("__cluster_metadata-0/00000000000000000000-0000000000.checkpoint"),
            "snapshot",
        )
        .unwrap();
        prepare(std::slice::from_ref(&dir)).unwrap();
        assert!(!dir_beside(&dir).exists());
        assert_eq!(berth_logdir::classify(&dir).unwrap(), LogDirState::Empty);
        std::fs::write(dir.join("events-0"), "data").unwrap();
        assert!(prepare(std::slice::from_ref(&dir)).is_err());
        assert!(dir.join("events-0").exists());
    }
}
