//! `meta.properties`: the identity Kafka stamps on each log dir, and its refusal of a dir stamped for another.

use std::path::Path;

use berth_kafka::overlay::write_atomic;
use berth_kafka::properties;

use crate::Fatal;

/// Checks every log dir's `meta.properties` against the configured id (and the cluster id, when known), and
/// writes it where absent: version 0 with `broker.id` in ZooKeeper mode, as Kafka does, version 1 with `node.id`
/// in KRaft mode (real Kafka wants `kafka-storage format` for that; the stand-in writes it itself).
pub fn check_and_stamp(
    dirs: &[impl AsRef<Path>],
    id: i32,
    kraft: bool,
    cluster_id: Option<&str>,
) -> Result<(), Fatal> {
    let id_key = if kraft { "node.id" } else { "broker.id" };
    let mut missing = Vec::new();
    for dir in dirs {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Fatal::io(dir, source))?;
        let path = dir.join("meta.properties");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path);
                continue;
            }
            Err(source) => return Err(Fatal::io(&path, source)),
        };
        let stored = properties::parse(&text);
        let stored_id = stored.get("broker.id").or_else(|| stored.get("node.id"));
        if let Some(stored_id) = stored_id {
            if stored_id.trim() != id.to_string() {
                return Err(Fatal::InconsistentBrokerId {
                    key: id_key,
                    configured: id,
                    stored: stored_id.trim().into(),
                });
            }
        }
        if let (Some(configured), Some(stored)) = (cluster_id, stored.get("cluster.id")) {
            if stored.trim() != configured {
                return Err(Fatal::InconsistentClusterId {
                    configured: configured.into(),
                    stored: stored.trim().into(),
                });
            }
        }
    }
    for path in missing {
        let mut text = String::from(
            "#\n#Written by kafka-standin (a stand-in for Kafka in berth's tests, not Kafka)\n",
        );
        if let Some(cluster) = cluster_id {
            text.push_str(&format!("cluster.id={cluster}\n"));
        }
        text.push_str(&format!(
            "version={}\n{id_key}={id}\n",
            if kraft { 1 } else { 0 }
        ));
        write_atomic(&path, &text).map_err(|source| Fatal::io(&path, source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_an_empty_dir_and_then_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        check_and_stamp(&[&data], 3, false, Some("abc")).unwrap();
        let text = std::fs::read_to_string(data.join("meta.properties")).unwrap();
        let stored = properties::parse(&text);
        assert_eq!(
            (stored["version"].as_str(), stored["broker.id"].as_str()),
            ("0", "3")
        );
        assert_eq!(stored["cluster.id"], "abc");
        check_and_stamp(&[&data], 3, false, Some("abc")).unwrap();
    }

    #[test]
    fn refuses_a_dir_of_another_broker_or_cluster() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meta.properties"),
            "version=0\nbroker.id=2\ncluster.id=abc\n",
        )
        .unwrap();
        let error = check_and_stamp(&[dir.path()], 1, false, None).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "kafka.common.InconsistentBrokerIdException: Configured broker.id 1 doesn't match stored broker.id Some(2)"
            ),
            "{error}"
        );
        let error = check_and_stamp(&[dir.path()], 2, false, Some("xyz")).unwrap_err();
        assert!(
            error.to_string().contains("InconsistentClusterIdException"),
            "{error}"
        );
    }
}
