//! `meta.properties`: the identity Kafka stamps on each log dir, its refusal of a dir stamped for another, and
//! (KRaft) the storage tool's `format`, which alone may stamp a KRaft dir.
//!
//! As Kafka 3.9 and 4.x do (measured on 3.9.2 and 4.4.0): in ZooKeeper mode a dir without the file is stamped
//! at start (version 0, `broker.id`, the cluster id from ZooKeeper); in KRaft mode the broker refuses to start
//! unless the storage tool formatted its dirs (version 1, `node.id`, `directory.id`, `cluster.id`). A stored id
//! or cluster that differs is refused with Kafka's own text.

use std::path::{Path, PathBuf};

use crate::registry::new_uuid;
use crate::settings::{read_into, Properties};
use crate::Fatal;

const META_FILE: &str = "meta.properties";

fn read(dir: &Path) -> Result<Option<(PathBuf, Properties)>, Fatal> {
    let path = dir.join(META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mut properties = Properties::new();
            read_into(&bytes, &mut properties)
                .map_err(|reason| Fatal::config(format!("{}: {reason}", path.display())))?;
            Ok(Some((path, properties)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Fatal::io(&path, source)),
    }
}

fn write(path: &Path, text: &str) -> Result<(), Fatal> {
    let temp = path.with_extension("properties.tmp");
    std::fs::write(&temp, text).map_err(|source| Fatal::io(&temp, source))?;
    std::fs::rename(&temp, path).map_err(|source| Fatal::io(path, source))
}

/// Checks every log dir's `meta.properties` against the configured id, the cluster id (ZooKeeper's, else the
/// first dir's) and each other. ZooKeeper mode stamps the dirs that have none; KRaft mode refuses them.
/// Returns the cluster id the dirs carry.
pub fn check_and_stamp(
    dirs: &[impl AsRef<Path>],
    id: i32,
    kraft: bool,
    cluster_id: Option<&str>,
) -> Result<Option<String>, Fatal> {
    let mut expected_cluster = cluster_id.map(str::to_owned);
    let mut missing = Vec::new();
    for dir in dirs {
        let dir = dir.as_ref();
        if !kraft {
            std::fs::create_dir_all(dir).map_err(|source| Fatal::io(dir, source))?;
        }
        let Some((path, stored)) = read(dir)? else {
            missing.push(dir.join(META_FILE));
            continue;
        };
        let stored_id = stored.get("node.id").or_else(|| stored.get("broker.id"));
        if let Some(stored_id) = stored_id.map(|value| value.trim()) {
            if stored_id != id.to_string() {
                return Err(Fatal::NodeIdMismatch {
                    stored: stored_id.into(),
                    configured: id,
                    path,
                });
            }
        }
        if let Some(stored) = stored.get("cluster.id").map(|value| value.trim()) {
            match &expected_cluster {
                Some(expected) if expected != stored => {
                    return Err(Fatal::ClusterIdMismatch {
                        path,
                        expected: expected.clone(),
                        stored: stored.into(),
                    })
                }
                Some(_) => {}
                None => expected_cluster = Some(stored.to_owned()),
            }
        }
    }
    if kraft {
        return match missing.first() {
            // Kafka 4.x with no formatted dir; the stand-in also refuses a partly formatted set.
            Some(_) if missing.len() == dirs.len() => Err(Fatal::NotFormatted),
            Some(path) => Err(Fatal::config(format!(
                "{} is missing: this log dir was not formatted (kafka-storage format)",
                path.display()
            ))),
            None => Ok(expected_cluster),
        };
    }
    for path in missing {
        let mut text = String::from(
            "#\n#Written by kafka-standin (a stand-in for Kafka in berth's tests, not Kafka)\n",
        );
        text.push_str(&format!("broker.id={id}\nversion=0\n"));
        if let Some(cluster) = &expected_cluster {
            text.push_str(&format!("cluster.id={cluster}\n"));
        }
        write(&path, &text)?;
    }
    Ok(expected_cluster)
}

/// `kafka-standin format --cluster-id ID --config FILE`: what Kafka's storage tool does for a static quorum.
/// Refuses a dir that is already formatted, as the tool does; accepts any cluster id, as the tool does
/// (measured: 3.9.2 and 4.4.0 format with `bad+id`). Returns the lines it prints.
pub fn format(
    settings: &crate::settings::Settings,
    cluster_id: &str,
) -> Result<Vec<String>, Fatal> {
    let mut said = Vec::new();
    for dir in &settings.log_dirs {
        if read(dir)?.is_some() {
            return Err(Fatal::AlreadyFormatted { dir: dir.clone() });
        }
    }
    for dir in &settings.log_dirs {
        std::fs::create_dir_all(dir).map_err(|source| Fatal::io(dir, source))?;
        let text = format!(
            "#\n#Written by kafka-standin format (a stand-in for Kafka's storage tool, not Kafka)\n\
             node.id={}\ndirectory.id={}\nversion=1\ncluster.id={cluster_id}\n",
            settings.id,
            new_uuid()
        );
        write(&dir.join(META_FILE), &text)?;
        said.push(format!(
            "Formatting metadata directory {} (kafka-standin)",
            dir.display()
        ));
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_mode_stamps_an_empty_dir_and_then_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        check_and_stamp(&[&data], 3, false, Some("abc")).unwrap();
        let (_, stored) = read(&data).unwrap().unwrap();
        assert_eq!(
            (stored["version"].as_str(), stored["broker.id"].as_str()),
            ("0", "3")
        );
        assert_eq!(stored["cluster.id"], "abc");
        check_and_stamp(&[&data], 3, false, Some("abc")).unwrap();
    }

    #[test]
    fn refuses_a_dir_of_another_broker_or_cluster_with_kafkas_words() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta.properties");
        std::fs::write(&meta, "version=0\nbroker.id=2\ncluster.id=abc\n").unwrap();
        let error = check_and_stamp(&[dir.path()], 1, false, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "java.lang.RuntimeException: Stored node id 2 doesn't match previous node id 1 in {}. If you \
                 moved your data, make sure your configured node id matches. If you intend to create a new node, \
                 you should remove all data in your data directories.",
                meta.display()
            )
        );
        let error = check_and_stamp(&[dir.path()], 2, false, Some("xyz")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "java.lang.RuntimeException: Invalid cluster.id in: {}. Expected xyz, but read abc",
                meta.display()
            )
        );
    }

    #[test]
    fn kraft_mode_refuses_unformatted_dirs_and_format_stamps_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let error = check_and_stamp(&[&data], 1, true, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "java.lang.RuntimeException: No readable meta.properties files found."
        );
        assert!(!data.exists(), "nothing written");
        let settings = crate::settings::Settings::from_properties(&crate::settings::parse(&format!(
            "process.roles=broker,controller\nnode.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092\nlog.dirs={}\n",
            data.display()
        )))
        .unwrap();
        format(&settings, "MkU3OEVBNTcwNTJENDM2Qg").unwrap();
        let (_, stored) = read(&data).unwrap().unwrap();
        assert_eq!(stored["version"], "1");
        assert_eq!(stored["node.id"], "1");
        assert_eq!(stored["cluster.id"], "MkU3OEVBNTcwNTJENDM2Qg");
        assert_eq!(stored["directory.id"].len(), 22);
        check_and_stamp(&[&data], 1, true, None).unwrap();
        let error = format(&settings, "MkU3OEVBNTcwNTJENDM2Qg").unwrap_err();
        assert!(
            error.to_string().contains("is already formatted"),
            "{error}"
        );
    }
}
