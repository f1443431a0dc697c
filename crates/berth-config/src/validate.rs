//! The rules serde cannot express: ranges, formats, and the keys that depend on each other. Each refusal names
//! its key, so `berth check-config` and the daemon exit 78 saying what to fix.

use std::path::{Component, Path};
use std::time::Duration;

use crate::budget::MAX_HOOK_WAIT;
use crate::{ClaimBackend, Config, ConfigError, KafkaMode, Supervisor};

pub(crate) fn ensure(
    condition: bool,
    key: &str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason()))
    }
}

/// `key`'s duration must be at least `least`.
fn ensure_at_least(value: Duration, least: Duration, key: &str) -> Result<(), ConfigError> {
    ensure(value >= least, key, || {
        format!(
            "must be at least {}",
            berth_core::duration::format_duration(least)
        )
    })
}

/// The `(key, value)` settings to check: each required one, and each optional one (`may_be_empty`) that is set.
fn set_or_required<'a, const N: usize>(
    settings: [(&'static str, &'a String, bool); N],
) -> impl Iterator<Item = (&'static str, &'a String)> {
    settings
        .into_iter()
        .filter(|(_, value, may_be_empty)| !(value.is_empty() && *may_be_empty))
        .map(|(key, value, _)| (key, value))
}

/// What Kafka generates for a cluster id (`Uuid.randomUuid().toString()`): 16 bytes in unpadded base64url, so 22
/// characters whose last one carries no stray bits, never starting with `-` (Kafka re-draws those, as its
/// command-line tools would read them as an option). Kafka's storage tool itself accepts any string (measured:
/// 3.9.2 and 4.4.0 format with `bad+id` or an empty id), so this is berth's check, not Kafka's.
pub fn is_kafka_cluster_id(id: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digit = |b: u8| ALPHABET.iter().position(|&a| a == b);
    id.len() == 22
        && !id.starts_with('-')
        && id.bytes().all(|b| digit(b).is_some())
        // 22 characters hold 132 bits: the last character's low 4 bits are padding and must be zero.
        && digit(id.as_bytes()[21]).is_some_and(|value| value & 0b1111 == 0)
}

/// The transient unit a `systemd-run` command runs as (its `--unit=NAME`, `--unit NAME` or `-u NAME`), for
/// any other program `None`; `Err` for a `systemd-run` command that names none.
pub fn transient_unit(command: &[String]) -> Result<Option<String>, String> {
    let Some(program) = command.first() else {
        return Ok(None);
    };
    if Path::new(program)
        .file_name()
        .is_none_or(|name| name != "systemd-run")
    {
        return Ok(None);
    }
    let mut words = command.iter().skip(1);
    while let Some(word) = words.next() {
        if let Some(unit) = word.strip_prefix("--unit=") {
            return Ok(Some(unit.to_owned()));
        }
        if word == "--unit" || word == "-u" {
            return Ok(words.next().cloned());
        }
        if !word.starts_with('-') {
            // The command to run: systemd-run's own options are over.
            break;
        }
    }
    Err("a systemd-run command must name its unit (--unit=NAME) so that berth can stop a run that outlived \
         it before looking at the log dirs again"
        .into())
}

pub(crate) fn is_absolute_clean(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir))
}

impl Config {
    /// Cross-field and range rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cluster()?;
        ensure(!self.tags.key.trim().is_empty(), "tags.key", || {
            "must not be empty".into()
        })?;
        for id in &self.claim.ids {
            ensure(*id < self.cluster.broker_count, "claim.ids", || {
                format!(
                    "{id} is not a broker id (ids are 0..{})",
                    self.cluster.broker_count
                )
            })?;
        }
        if self.claim_backend() == ClaimBackend::Zookeeper
            || self.kafka.mode == KafkaMode::Zookeeper
        {
            self.validate_zookeeper()?;
        }
        self.validate_aws()?;
        self.validate_storage()?;
        self.validate_kafka()?;
        self.validate_health()?;
        self.validate_states()
    }

    /// The two listeners cannot share a port on overlapping addresses (the second bind would fail).
    fn validate_health(&self) -> Result<(), ConfigError> {
        let (public, local) = (self.health.listen, self.health.state_listen);
        let overlap = public.ip() == local.ip()
            || public.ip().is_unspecified()
            || local.ip().is_unspecified();
        ensure(
            public.port() != local.port() || !overlap || public.port() == 0,
            "health.state_listen",
            || {
                format!("must not share health.listen's port on an overlapping address, got {local} and {public}")
            },
        )
    }

    /// The cluster's name, size and Kafka cluster id.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let name = &self.cluster.name;
        if name.is_empty() {
            return Err(ConfigError::required(
                "cluster.name",
                "the cluster's name (lower-case letters, digits and dashes; the value of the cluster tag)",
            ));
        }
        if self.cluster.broker_count == 0 {
            return Err(ConfigError::required(
                "cluster.broker_count",
                "the number of broker ids, 1 to 10000 (ids are 0 .. broker_count-1)",
            ));
        }
        ensure(
            name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-'),
            "cluster.name",
            || {
                format!("must be 1-64 lower-case letters, digits or dashes, not starting with a dash; got {name:?}")
            },
        )?;
        ensure(
            (1..=10_000).contains(&self.cluster.broker_count),
            "cluster.broker_count",
            || {
                format!(
                    "must be between 1 and 10000, got {}",
                    self.cluster.broker_count
                )
            },
        )?;
        match &self.cluster.kafka_cluster_id {
            Some(id) => ensure(is_kafka_cluster_id(id), "cluster.kafka_cluster_id", || {
                format!(
                        "must be a Kafka cluster id (a UUID in base64url: 22 characters of A-Z a-z 0-9 - _, \
                         not starting with '-', as `kafka-storage.sh random-uuid` prints), got {id:?}"
                    )
            })?,
            None if self.kafka.mode == KafkaMode::Kraft => {
                return Err(ConfigError::required(
                    "cluster.kafka_cluster_id",
                    "required when kafka.mode = \"kraft\": berth formats blank storage with it \
                     (generate one with `kafka-storage.sh random-uuid`)",
                ))
            }
            None => {}
        }
        Ok(())
    }

    /// Each state's deadline and backoff.
    fn validate_states(&self) -> Result<(), ConfigError> {
        for (state, settings) in self.states.each() {
            let key = |field: &str| format!("states.{state}.{field}");
            ensure(
                settings.deadline >= Duration::from_secs(1),
                &key("deadline"),
                || {
                    format!(
                        "must be at least 1s, got {}",
                        berth_core::duration::format_duration(settings.deadline)
                    )
                },
            )?;
            ensure(
                !settings.initial_backoff.is_zero(),
                &key("initial_backoff"),
                || "must be more than 0s".into(),
            )?;
            ensure(
                settings.max_backoff >= settings.initial_backoff,
                &key("max_backoff"),
                || "must not be smaller than initial_backoff".into(),
            )?;
            ensure(
                settings.max_backoff <= settings.deadline,
                &key("max_backoff"),
                || "must not be larger than the state's deadline".into(),
            )?;
        }
        Ok(())
    }

    fn validate_zookeeper(&self) -> Result<(), ConfigError> {
        let zk = &self.zookeeper;
        if zk.connect.trim().is_empty() {
            let needed_by = if self.kafka.mode == KafkaMode::Zookeeper {
                "kafka.mode = \"zookeeper\" (the default; \"kraft\" needs no ZooKeeper)"
            } else {
                "claim.backend = \"zookeeper\""
            };
            return Err(ConfigError::required(
                "zookeeper.connect",
                &format!("the ensemble's host:port list, needed by {needed_by}"),
            ));
        }
        ensure(!zk.connect.contains('/'), "zookeeper.connect", || {
            "must not carry a chroot; set zookeeper.root (claims) and zookeeper.kafka_chroot (Kafka) instead".into()
        })?;
        for server in zk.connect.split(',') {
            let server = server.trim();
            let port_ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            ensure(port_ok, "zookeeper.connect", || {
                format!("{server:?} is not host:port")
            })?;
        }
        ensure(
            (Duration::from_secs(2)..=Duration::from_secs(40)).contains(&zk.session_timeout),
            "zookeeper.session_timeout",
            || {
                format!(
                    "must be between 2s and 40s, got {}",
                    berth_core::duration::format_duration(zk.session_timeout)
                )
            },
        )?;
        for (key, path) in set_or_required([
            ("zookeeper.root", &zk.root, false),
            ("zookeeper.kafka_chroot", &zk.kafka_chroot, true),
        ]) {
            let valid = path.starts_with('/')
                && (path == "/" || !path.ends_with('/'))
                && !path.contains("//")
                && path.split('/').all(|part| part != "." && part != "..");
            ensure(valid, key, || {
                format!("must be an absolute znode path like /berth, got {path:?}")
            })?;
        }
        if !zk.digest.is_empty() {
            let ok = zk
                .digest
                .expose()
                .split_once(':')
                .is_some_and(|(user, password)| !user.is_empty() && !password.is_empty());
            ensure(ok, "zookeeper.digest", || "must be user:password".into())?;
        }
        Ok(())
    }

    fn validate_aws(&self) -> Result<(), ConfigError> {
        let aws = &self.aws;
        ensure(
            aws.eni_device_index >= 1 && aws.eni_device_index <= 31,
            "aws.eni_device_index",
            || {
                format!(
                    "must be between 1 and 31 (0 is the primary interface), got {}",
                    aws.eni_device_index
                )
            },
        )?;
        ensure(aws.network_card <= 15, "aws.network_card", || {
            format!("must be between 0 and 15, got {}", aws.network_card)
        })?;
        let device_ok = aws.volume_device.strip_prefix("/dev/").is_some_and(|name| {
            let (prefix, letters) = if let Some(rest) = name.strip_prefix("xvd") {
                ("xvd", rest)
            } else if let Some(rest) = name.strip_prefix("sd") {
                ("sd", rest)
            } else {
                ("", "")
            };
            !prefix.is_empty()
                && (1..=2).contains(&letters.len())
                && letters.bytes().all(|b| b.is_ascii_lowercase())
                && !matches!(letters, "a" | "a1")
        });
        ensure(device_ok, "aws.volume_device", || {
            format!("must be an EC2 device name like /dev/xvdf or /dev/sdf (not the root device), got {:?}", aws.volume_device)
        })?;
        self.validate_takeover()?;
        for (key, url) in set_or_required([
            ("aws.endpoint_url", &aws.endpoint_url, true),
            ("aws.imds_endpoint", &aws.imds_endpoint, false),
        ]) {
            ensure(
                url.starts_with("http://") || url.starts_with("https://"),
                key,
                || format!("must be an http:// or https:// URL, got {url:?}"),
            )?;
        }
        ensure_at_least(
            aws.termination_poll,
            Duration::from_millis(100),
            "aws.termination_poll",
        )?;
        let heartbeat = aws.autoscaling.heartbeat_interval;
        ensure(
            heartbeat.is_zero() || heartbeat >= Duration::from_secs(1),
            "aws.autoscaling.heartbeat_interval",
            || "must be 0s (off) or at least 1s".into(),
        )?;
        ensure(
            (Duration::from_secs(30)..=Duration::from_secs(7200))
                .contains(&aws.autoscaling.hook_timeout),
            "aws.autoscaling.hook_timeout",
            || "must be between 30s and 2h (Auto Scaling's HeartbeatTimeout range)".into(),
        )?;
        Ok(())
    }

    /// Who may be taken over, and how long a dying owner is waited for.
    fn validate_takeover(&self) -> Result<(), ConfigError> {
        let aws = &self.aws;
        for state in &aws.takeover_owner_states {
            ensure(
                matches!(state.as_str(), "shutting-down" | "terminated"),
                "aws.takeover_owner_states",
                || {
                    format!("{state:?} is not a state an owner may be taken over in: only shutting-down and terminated (a stopping or stopped instance keeps its attachments and may run Kafka again)")
                },
            )?;
        }
        let attach_deadline = self
            .states
            .attach_eni
            .deadline
            .min(self.states.attach_ebs.deadline);
        ensure(
            aws.takeover_wait < attach_deadline,
            "aws.takeover_wait",
            || {
                format!(
                    "must be shorter than the attach states' deadlines ({}), or a boot could never take over",
                    berth_core::duration::format_duration(attach_deadline)
                )
            },
        )?;
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        for (key, path) in [
            ("storage.device_root", &storage.device_root),
            ("storage.sys_root", &storage.sys_root),
            ("storage.mount_path", &storage.mount_path),
        ] {
            ensure(is_absolute_clean(path), key, || {
                format!("must be an absolute path without . or .., got {path:?}")
            })?;
        }
        ensure(
            storage.mount_path != Path::new("/"),
            "storage.mount_path",
            || "must not be /".into(),
        )?;
        ensure(!storage.log_dirs.is_empty(), "storage.log_dirs", || {
            "must name at least one log dir".into()
        })?;
        for dir in &storage.log_dirs {
            let relative = dir.is_relative()
                && dir.components().all(|c| matches!(c, Component::Normal(_)))
                && dir.components().next().is_some();
            ensure(relative, "storage.log_dirs", || {
                format!(
                    "{dir:?} must be a relative path inside the mount point (no .., not absolute)"
                )
            })?;
        }
        ensure(
            !storage.mount_options.contains(char::is_whitespace),
            "storage.mount_options",
            || "must be comma-separated options without spaces, as in fstab".into(),
        )?;
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        self.validate_kafka_process()?;
        self.validate_kafka_kraft()?;
        self.validate_kafka_waits()?;
        self.kafka.security.validate("kafka.security")?;
        if let Some(controller) = &self.kafka.controller_security {
            self.ensure_kraft_only(true, "kafka.controller_security")?;
            controller.validate("kafka.controller_security")?;
        }
        Ok(())
    }

    /// How Kafka is run and reached.
    fn validate_kafka_process(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        match kafka.supervisor {
            Supervisor::Systemd => ensure(
                kafka.unit.ends_with(".service") && kafka.unit.len() > ".service".len(),
                "kafka.unit",
                || {
                    format!(
                        "must be a systemd service name like kafka.service, got {:?}",
                        kafka.unit
                    )
                },
            )?,
            Supervisor::Process => ensure(!kafka.command.is_empty(), "kafka.command", || {
                "must name the program to run when kafka.supervisor = \"process\"".into()
            })?,
        }
        ensure(
            is_absolute_clean(&kafka.overlay_path),
            "kafka.overlay_path",
            || "must be an absolute path".into(),
        )?;
        ensure(kafka.port > 0, "kafka.port", || {
            "must be a port between 1 and 65535".into()
        })?;
        ensure(
            !kafka.listener_name.is_empty()
                && kafka
                    .listener_name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "kafka.listener_name",
            || {
                format!(
                    "must be an upper-case listener name like PLAINTEXT, got {:?}",
                    kafka.listener_name
                )
            },
        )?;
        Ok(())
    }

    /// KRaft storage and the controller quorum.
    fn validate_kafka_kraft(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        if kafka.mode == KafkaMode::Kraft {
            ensure(
                kafka
                    .format_command
                    .first()
                    .is_some_and(|program| !program.trim().is_empty()),
                "kafka.format_command",
                || "must name the storage tool when kafka.mode = \"kraft\"".into(),
            )?;
            ensure(
                is_absolute_clean(&kafka.server_properties),
                "kafka.server_properties",
                || "must be an absolute path".into(),
            )?;
        }
        for id in &kafka.controller_ids {
            ensure(
                *id < self.cluster.broker_count,
                "kafka.controller_ids",
                || {
                    format!(
                        "{id} is not a broker id (ids are 0..{})",
                        self.cluster.broker_count
                    )
                },
            )?;
        }
        self.ensure_kraft_only(!kafka.controller_ids.is_empty(), "kafka.controller_ids")?;
        self.ensure_kraft_only(kafka.quorum_voters, "kafka.quorum_voters")?;
        if kafka.mode == KafkaMode::Kraft {
            transient_unit(&kafka.format_command)
                .map_err(|reason| ConfigError::invalid("kafka.format_command", reason))?;
        }
        if kafka.quorum_voters {
            ensure(
                !kafka.controller_ids.is_empty(),
                "kafka.controller_ids",
                || {
                    "must list the controller ids when kafka.quorum_voters is on: the static voter set comes only \
                     from here (never from discovery, where a new id or a missing tag would change it)"
                        .into()
                },
            )?;
            ensure(
                kafka.controller_port != kafka.port,
                "kafka.controller_port",
                || "must differ from kafka.port".into(),
            )?;
        }
        Ok(())
    }

    /// A KRaft-only setting `key` must not be `set` in ZooKeeper mode.
    fn ensure_kraft_only(&self, set: bool, key: &str) -> Result<(), ConfigError> {
        ensure(!set || self.kafka.mode == KafkaMode::Kraft, key, || {
            "only applies when kafka.mode = \"kraft\"".into()
        })
    }

    /// The checks' interval and the gate's, the stop's and the drain's bounds.
    fn validate_kafka_waits(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        ensure_at_least(
            kafka.check_interval,
            Duration::from_millis(100),
            "kafka.check_interval",
        )?;
        ensure_at_least(
            kafka.stop_timeout,
            Duration::from_secs(1),
            "kafka.stop_timeout",
        )?;
        ensure(
            (Duration::from_secs(1)..=MAX_HOOK_WAIT).contains(&kafka.caught_up_deadline),
            "kafka.caught_up_deadline",
            || "must be between 1s and 48h (Auto Scaling's longest lifecycle hook wait)".into(),
        )?;
        ensure(
            kafka.drain_wait <= MAX_HOOK_WAIT,
            "kafka.drain_wait",
            || {
                "must be between 0s (off) and 48h (Auto Scaling's longest lifecycle hook wait)"
                    .into()
            },
        )?;
        Ok(())
    }
}
