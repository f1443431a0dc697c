//! The identity check: is the mounted volume this broker's, of this cluster?
//!
//! Kafka writes `meta.properties` into each log dir the first time it uses it (`broker.id` in ZooKeeper mode,
//! `node.id` in KRaft mode, `cluster.id` in both). A volume whose file names another broker or cluster is the
//! wrong volume: starting Kafka on it would serve another broker's data (or have Kafka refuse, after berth had
//! already reported progress). A log dir without the file is a fresh volume and fine.
//!
//! The check only reads. berth never creates the log dirs or writes `meta.properties`: Kafka creates missing
//! log dirs itself with its own user and permissions, so the volume's contents stay Kafka's alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::BrokerId;

use crate::error::StorageError;

/// The identity keys read from one log dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaIdentity {
    /// The file read.
    pub path: PathBuf,
    /// `broker.id`, when present.
    pub broker_id: Option<String>,
    /// `node.id`, when present.
    pub node_id: Option<String>,
    /// `cluster.id`, when present.
    pub cluster_id: Option<String>,
}

/// Reads the keys berth cares about from `meta.properties` text (`key=value` or `key: value` lines, `#`/`!`
/// comments). Kafka writes these keys unescaped (decimal ids, a base64url cluster id).
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| {
            let split = line.find(['=', ':'])?;
            Some((
                line[..split].trim().to_owned(),
                line[split + 1..].trim().to_owned(),
            ))
        })
        .collect()
}

/// Reads `<log_dir>/meta.properties`; `None` when the dir or the file does not exist.
pub fn read(log_dir: &Path) -> Result<Option<MetaIdentity>, StorageError> {
    let path = log_dir.join("meta.properties");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("read", path, error)),
    };
    let mut keys = parse(&text);
    Ok(Some(MetaIdentity {
        broker_id: keys.remove("broker.id"),
        node_id: keys.remove("node.id"),
        cluster_id: keys.remove("cluster.id"),
        path,
    }))
}

/// Checks every log dir: ids must equal the claimed id, `cluster.id` the configured one (when configured) and
/// the log dirs must agree with each other. Returns what was read.
pub fn check(
    log_dirs: &[PathBuf],
    broker_id: BrokerId,
    cluster_id: Option<&str>,
) -> Result<Vec<MetaIdentity>, StorageError> {
    let mut seen = Vec::new();
    let mut first_cluster: Option<(String, PathBuf)> = None;
    for dir in log_dirs {
        let Some(meta) = read(dir)? else { continue };
        for (key, value) in [("broker.id", &meta.broker_id), ("node.id", &meta.node_id)] {
            let Some(value) = value else { continue };
            let parsed: u32 = value.parse().map_err(|_| StorageError::BadMeta {
                path: meta.path.clone(),
                key,
                value: value.clone(),
            })?;
            if parsed != broker_id.0 {
                return Err(StorageError::ForeignMeta {
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
                return Err(StorageError::ForeignMeta {
                    path: meta.path.clone(),
                    key: "cluster.id",
                    found: found.clone(),
                    expected_what: "cluster.kafka_cluster_id".into(),
                    expected: expected.to_owned(),
                });
            }
            match &first_cluster {
                Some((other, other_path)) if other != found => {
                    return Err(StorageError::ForeignMeta {
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
    fn garbage_ids_are_refused() {
        let dir = dir_with("broker.id=seven\n");
        assert!(matches!(
            check(&[dir.path().into()], BrokerId(7), None),
            Err(StorageError::BadMeta { .. })
        ));
    }
}
