//! The settings overlay: the few Kafka settings berth owns, in a file of their own.
//!
//! The operator's `server.properties` stays theirs; berth only writes what depends on the id it claimed (the id,
//! the ENI address, the mounted log dirs, the zone). The file is included after the operator's (later keys win,
//! see docs/kafka.md). It is replaced atomically (temp file in the same directory, fsync, rename, fsync the
//! directory), so Kafka never reads half a file, and left alone when unchanged, so its mtime tells the operator
//! when berth last changed a setting.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_core::ports::BrokerSpec;
use berth_core::{BrokerId, KafkaMode};

use crate::properties::escape_value;

/// Everything the overlay is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayInput<'a> {
    /// ZooKeeper (`broker.id`) or KRaft (`node.id`).
    pub mode: KafkaMode,
    /// The broker this host runs as.
    pub spec: &'a BrokerSpec,
    /// `advertised.listeners` ([`crate::listeners::advertised`]).
    pub advertised_listeners: &'a str,
    /// KRaft: every voter's id and ENI address, for `controller.quorum.voters` (None leaves it to the operator).
    pub voters: Option<&'a BTreeMap<BrokerId, Ipv4Addr>>,
    /// KRaft: the controllers' port.
    pub controller_port: u16,
}

/// Renders the overlay's text; the same input always gives the same bytes.
pub fn render(input: &OverlayInput<'_>) -> String {
    let spec = input.spec;
    let mut out = String::from(
        "# Written by berth: the Kafka settings that depend on the broker id this host claimed.\n\
         # Do not edit: berth rewrites this file before it starts Kafka. It is read after the operator's\n\
         # server.properties, so these keys win (see docs/kafka.md).\n",
    );
    let mut line = |key: &str, value: &str| {
        out.push_str(key);
        out.push('=');
        out.push_str(&escape_value(value));
        out.push('\n');
    };
    match input.mode {
        KafkaMode::Zookeeper => line("broker.id", &spec.broker_id.to_string()),
        KafkaMode::Kraft => {
            line("node.id", &spec.broker_id.to_string());
            if let Some(voters) = input.voters {
                line(
                    "controller.quorum.voters",
                    &berth_core::birth::render_voters(voters, input.controller_port),
                );
            }
        }
    }
    line("advertised.listeners", input.advertised_listeners);
    let dirs: Vec<String> = spec
        .log_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    line("log.dirs", &dirs.join(","));
    line("broker.rack", &spec.rack);
    out
}

/// Writes `content` to `path` atomically unless the file already holds exactly it; returns whether it wrote.
///
/// The file is created mode 0644: Kafka usually runs as its own user and must read it.
pub fn write_atomic(path: &Path, content: &str) -> io::Result<bool> {
    match fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => return Ok(false),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(content.as_bytes())?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn unchanged_content_is_not_rewritten_and_changed_content_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/berth.properties");
        assert!(
            write_atomic(&path, "broker.id=1\n").unwrap(),
            "first write creates the file and its directory"
        );
        let inode = fs::metadata(&path).unwrap().ino();
        assert!(
            !write_atomic(&path, "broker.id=1\n").unwrap(),
            "same content: no write"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            inode,
            "the file was not replaced"
        );
        assert!(write_atomic(&path, "broker.id=2\n").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "broker.id=2\n");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            inode,
            "replaced by rename, not rewritten in place"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().mode() & 0o777,
            0o644,
            "readable by Kafka's user"
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
