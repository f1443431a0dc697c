//! KRaft storage: formatted before the first start, only when every log dir is blank, and so that an
//! interruption leaves nothing half done.
//!
//! Kafka 4.x refuses to start on a log dir without `meta.properties` ("No readable meta.properties files
//! found"); its storage tool (`kafka-storage.sh format`, class `kafka.tools.StorageTool`) writes one per dir
//! with the cluster id, the node id and a fresh directory id. Formatting a dir that holds data would stamp
//! someone else's data as this node's, so berth formats only when every log dir is absent, empty, or holds
//! only what an interrupted format leaves (`berth_logdir::LogDirState::InterruptedFormat`: the bootstrap
//! snapshot, temporary files, no records), never when one holds anything else: a dir with data but no
//! `meta.properties` is refused (fatal, naming the dir), and so is a mix of formatted and blank dirs.
//!
//! The tool writes the bootstrap snapshot before `meta.properties` (`Formatter.java`), so a tool killed half
//! way leaves a log dir that is neither blank nor formatted. berth therefore never lets it write into a log dir:
//! it formats beside it and renames into place ([`crate::staging`]), and a run that can outlive berth (the
//! default runs the tool as a transient systemd unit) is a named unit that berth stops before it looks at the
//! log dirs again ([`Formatter::settle`]), and stops when its own deadline passes.
//!
//! The tool reads the broker's settings (`process.roles`, `node.id`, `log.dirs`, `controller.quorum.voters`...)
//! from one file, so berth gives it what Kafka itself will read: the operator's `server.properties` followed by
//! berth's overlay, concatenated exactly as the documented drop-in's `awk 1` does ([`merge_as_awk`]), then the
//! staging dirs as `log.dirs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::{Classify, ErrorKind};
use berth_logdir::{LogDirError, LogDirState};

use crate::staging;
use crate::supervisor::{output_within, Bounded, SupervisorError, SystemdUnit, UnitAction};

/// The least time the storage tool is started with: a JVM that formats takes 1-2 s on a quiet host and ten
/// times that on a loaded one; a tool started with less than this left would likely be killed half way.
pub const FORMAT_MIN_TIME: Duration = Duration::from_secs(30);

/// Lines of the format command's output kept to explain a failure.
const OUTPUT_LINES: usize = 8;

/// What the log dirs hold, as far as formatting is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageState {
    /// Every log dir carries `meta.properties`: Kafka checks the rest at start.
    Formatted,
    /// Every log dir is absent or empty: the storage must be formatted before Kafka can start.
    Blank,
}

/// Why KRaft storage cannot be formatted, or was not.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A log dir holds data but no `meta.properties`.
    #[error(
        "log dir {dir} holds data ({entries}) but no meta.properties: berth formats only blank log dirs, \
         and Kafka does not start on an unformatted one; refusing to touch it"
    )]
    Unstamped {
        /// The log dir.
        dir: PathBuf,
        /// Some of its entries.
        entries: String,
    },
    /// Some log dirs are formatted, others blank.
    #[error(
        "log dirs {blank} are blank but {formatted} carry meta.properties: berth formats only when every log \
         dir is blank; format the blank ones by hand (kafka-storage.sh format --ignore-formatted) once that is safe"
    )]
    PartlyFormatted {
        /// The blank dirs.
        blank: String,
        /// The formatted dirs.
        formatted: String,
    },
    /// A log dir could not be looked at, or `meta.properties` read.
    #[error(transparent)]
    LogDir(#[from] LogDirError),
    /// The operator's `server.properties` could not be read.
    #[error("reading kafka.server_properties {path} to build the storage tool's configuration")]
    ServerProperties {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The merged configuration could not be written.
    #[error("writing the storage tool's configuration next to {path}")]
    Config {
        /// The overlay beside which it is written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The format command could not be started.
    #[error("starting kafka.format_command {program:?}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The format command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its last lines.
        output: String,
    },
    /// The format command did not finish by the deadline.
    #[error("`{command}` did not finish within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// `metadata.log.dir` names a dir that is not one of `storage.log_dirs`: berth formats only its volume.
    #[error(
        "metadata.log.dir {dir} is not one of the log dirs berth manages ({log_dirs}): leave it unset (Kafka then \
         keeps the metadata log in the first log dir) or name one of them"
    )]
    MetadataDirOutside {
        /// The configured metadata log dir.
        dir: String,
        /// The log dirs.
        log_dirs: String,
    },
    /// The transient unit of an earlier run could not be stopped.
    #[error("stopping the storage tool's unit {unit} before looking at the log dirs")]
    Unit {
        /// The unit.
        unit: String,
        /// What systemctl said.
        #[source]
        source: crate::supervisor::SupervisorError,
    },
    /// Too little of the deadline is left to give the tool its minimum time.
    #[error("only {left:?} of the deadline is left, less than the {needed:?} the storage tool is given: not started")]
    TooLittleTime {
        /// What is left.
        left: Duration,
        /// The minimum.
        needed: Duration,
    },
    /// Renaming the formatted staging dir into place failed (or the log dir is no longer blank).
    #[error("moving the format from {staging} into {dir}")]
    Rename {
        /// The staging dir.
        staging: PathBuf,
        /// The log dir.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No log dir is configured.
    #[error("no log dir is configured (storage.log_dirs)")]
    NoLogDirs,
    /// The command succeeded but a log dir still has no `meta.properties`.
    #[error("`{command}` succeeded but {dir} has no meta.properties")]
    NotFormatted {
        /// The command line.
        command: String,
        /// The log dir.
        dir: PathBuf,
    },
}

impl From<Bounded> for FormatError {
    fn from(failure: Bounded) -> Self {
        match failure {
            Bounded::TimedOut { command, after } => Self::Timeout { command, after },
            Bounded::Spawn { program, source } => Self::Spawn { program, source },
        }
    }
}

impl Classify for FormatError {
    /// Retryable when trying again can help: a command that ran out of time (or had too little), a unit that
    /// would not stop yet, a transient I/O error.
    fn kind(&self) -> ErrorKind {
        match self {
            FormatError::Timeout { .. } | FormatError::TooLittleTime { .. } => ErrorKind::Retryable,
            FormatError::Unit { source, .. }
                if !matches!(source, SupervisorError::Spawn { .. }) =>
            {
                ErrorKind::Retryable
            }
            FormatError::Rename { source, .. }
                if source.kind() != std::io::ErrorKind::DirectoryNotEmpty =>
            {
                ErrorKind::Retryable
            }
            FormatError::LogDir(error) => error.kind(),
            FormatError::ServerProperties { source, .. } | FormatError::Config { source, .. }
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                ErrorKind::Retryable
            }
            _ => ErrorKind::Fatal,
        }
    }
}

/// Looks at every log dir (without changing any): formatted, blank (a dir holding only an interrupted format's
/// files counts as blank: [`crate::staging`] clears exactly those before it renames a format in), or refused.
pub fn assess(log_dirs: &[PathBuf]) -> Result<StorageState, FormatError> {
    let mut blank = Vec::new();
    let mut formatted = Vec::new();
    for dir in log_dirs {
        match berth_logdir::classify(dir)? {
            LogDirState::Unstamped { entries } => {
                return Err(FormatError::Unstamped {
                    dir: dir.clone(),
                    entries: entries.join(", "),
                })
            }
            LogDirState::Formatted(_) => formatted.push(dir.display().to_string()),
            LogDirState::Absent | LogDirState::Empty | LogDirState::InterruptedFormat { .. } => {
                blank.push(dir.display().to_string())
            }
        }
    }
    match (blank.is_empty(), formatted.is_empty()) {
        (true, _) => Ok(StorageState::Formatted),
        (false, true) => Ok(StorageState::Blank),
        (false, false) => Err(FormatError::PartlyFormatted {
            blank: blank.join(", "),
            formatted: formatted.join(", "),
        }),
    }
}

/// The files concatenated as `awk 1 a b` prints them: each file's text, with a newline added to one that does
/// not end with one (so its last line cannot glue to the next file's first).
pub fn merge_as_awk(texts: &[&str]) -> String {
    let mut merged = String::new();
    for text in texts {
        merged.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            merged.push('\n');
        }
    }
    merged
}

/// What the storage tool will read, and what berth needs from it to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSettings {
    /// The operator's `server.properties` followed by the overlay ([`merge_as_awk`]).
    pub merged: String,
    /// `process.roles` names `controller`.
    pub controller: bool,
    /// `process.roles` names `broker`.
    pub broker: bool,
    /// A dynamic quorum (KIP-853): `controller.quorum.bootstrap.servers` set, `controller.quorum.voters` not.
    pub dynamic: bool,
    /// `metadata.log.dir`, when set (Kafka's default is the first of `log.dirs`).
    pub metadata_log_dir: Option<PathBuf>,
}

impl ToolSettings {
    /// From the merged text, read as Java's `Properties` reads it (a repeated key: the last line wins).
    pub fn from_merged(merged: String) -> Self {
        let properties = berth_logdir::parse(&merged);
        let value = |key: &str| properties.get(key).filter(|v| !v.trim().is_empty());
        let has_role = |wanted: &str| {
            value("process.roles")
                .is_some_and(|roles| roles.split(',').any(|role| role.trim() == wanted))
        };
        let dynamic = value("controller.quorum.voters").is_none()
            && value("controller.quorum.bootstrap.servers").is_some();
        Self {
            controller: has_role("controller"),
            broker: has_role("broker"),
            dynamic,
            metadata_log_dir: value("metadata.log.dir").map(|dir| PathBuf::from(dir.trim())),
            merged,
        }
    }

    /// The log dir that holds the metadata log: `metadata.log.dir` (which must be one of `log_dirs`), else the
    /// first log dir, as Kafka chooses.
    pub fn metadata_dir(&self, log_dirs: &[PathBuf]) -> Result<PathBuf, FormatError> {
        match &self.metadata_log_dir {
            Some(dir) if log_dirs.contains(dir) => Ok(dir.clone()),
            Some(dir) => Err(FormatError::MetadataDirOutside {
                dir: dir.display().to_string(),
                log_dirs: log_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            None => log_dirs.first().cloned().ok_or(FormatError::NoLogDirs),
        }
    }
}

/// Kafka's storage tool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    /// `kafka.format_command`.
    pub command: Vec<String>,
    /// `kafka.server_properties`.
    pub server_properties: PathBuf,
    /// The transient systemd unit the command runs the tool as (`systemd-run --unit=`), `None` when it runs
    /// as berth's child (and dies with the step).
    pub unit: Option<String>,
}

impl Formatter {
    /// The full command line for a cluster id, a configuration file and the quorum arguments.
    pub fn command_line(&self, cluster_id: &str, config: &Path, quorum: &[String]) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.extend([
            "--cluster-id".into(),
            cluster_id.into(),
            "--config".into(),
            config.display().to_string(),
        ]);
        argv.extend(quorum.iter().cloned());
        argv
    }

    /// What the tool would read: the operator's `server.properties` merged with `overlay`.
    pub fn settings(&self, overlay: &str) -> Result<ToolSettings, FormatError> {
        let server = std::fs::read(&self.server_properties).map_err(|source| {
            FormatError::ServerProperties {
                path: self.server_properties.clone(),
                source,
            }
        })?;
        // Bytes pass through unchanged: ISO-8859-1 in, ISO-8859-1 out, as awk would copy them.
        let server: String = server.iter().map(|&b| char::from(b)).collect();
        Ok(ToolSettings::from_merged(merge_as_awk(&[&server, overlay])))
    }

    /// Stops the tool's unit if an earlier run is still going (a berth killed, or a deadline passed, while it
    /// ran) and waits until it has stopped, so nothing writes while berth looks at the log dirs. A unit that is
    /// not loaded is stopped already.
    pub async fn settle(&self, timeout: Duration) -> Result<(), FormatError> {
        let Some(unit) = self.unit.clone() else {
            return Ok(());
        };
        match SystemdUnit::new(unit.clone())
            .run(UnitAction::Stop, timeout)
            .await
        {
            Err(SupervisorError::Systemctl { output, .. }) if output.contains("not loaded") => {
                Ok(())
            }
            Err(source) => Err(FormatError::Unit { unit, source }),
            Ok(()) => Ok(()),
        }
    }

    /// Formats blank storage beside the log dirs and renames it into place ([`crate::staging`]): clears stale
    /// staging dirs and interrupted formats' files, writes the merged configuration (see
    /// [`Formatter::settings`]) with the staging dirs as `log.dirs` next to the overlay (mode 0644, removed
    /// after), runs the command with the quorum arguments, at least [`FORMAT_MIN_TIME`] and at most `timeout`
    /// (stopping its unit if it overruns), checks that every staging dir carries `meta.properties`, then renames
    /// them in, the metadata log's dir last. Returns the command line run.
    pub async fn format(
        &self,
        cluster_id: &str,
        overlay_path: &Path,
        settings: &ToolSettings,
        quorum: &[String],
        log_dirs: &[PathBuf],
        timeout: Duration,
    ) -> Result<String, FormatError> {
        if timeout < FORMAT_MIN_TIME {
            return Err(FormatError::TooLittleTime {
                left: timeout,
                needed: FORMAT_MIN_TIME,
            });
        }
        let metadata_dir = settings.metadata_dir(log_dirs)?;
        staging::prepare(log_dirs)?;
        let mut text = settings.merged.clone();
        text.push_str(&staging::settings(
            log_dirs,
            settings.metadata_log_dir.as_deref(),
        ));
        let config = write_config(overlay_path, &text)?;
        let argv = self.command_line(cluster_id, config.path(), quorum);
        let command = argv.join(" ");
        let output = match output_within(&argv, timeout).await {
            Err(Bounded::TimedOut { .. }) if self.unit.is_some() => {
                // Killing systemd-run leaves its unit running: stop it before anyone looks again.
                let stopped = self.settle(FORMAT_MIN_TIME).await;
                tracing::warn!(%command, ?stopped, "the storage tool overran the deadline: its unit stopped");
                return Err(FormatError::Timeout {
                    command,
                    after: timeout,
                });
            }
            other => other?,
        };
        let said = last_lines(&output.stdout, &output.stderr);
        if !output.status.success() {
            return Err(FormatError::Failed {
                command,
                status: output.status.to_string(),
                output: said,
            });
        }
        for dir in log_dirs {
            let staged = staging::dir_beside(dir);
            if berth_logdir::read(&staged)?.is_none() {
                return Err(FormatError::NotFormatted {
                    command,
                    dir: staged,
                });
            }
        }
        staging::commit(log_dirs, &metadata_dir)?;
        tracing::info!(%command, output = %said, "formatted blank KRaft storage beside the log dirs and moved it in");
        Ok(command)
    }
}

fn write_config(overlay_path: &Path, merged: &str) -> Result<tempfile::NamedTempFile, FormatError> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let error = |source| FormatError::Config {
        path: overlay_path.to_owned(),
        source,
    };
    let dir = overlay_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(error)?;
    let mut file = tempfile::Builder::new()
        .prefix(".berth-format.")
        .suffix(".properties")
        .tempfile_in(dir)
        .map_err(error)?;
    // Owner only, before a byte is written: the operator's settings carry secrets (`sasl.jaas.config`, keystore
    // passwords). The storage tool runs as berth's user (root), so it reads the file all the same.
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(error)?;
    // Latin-1 out: every character of `merged` came from a byte or from berth's ASCII overlay.
    let bytes: Vec<u8> = merged.chars().map(|c| c as u32 as u8).collect();
    file.write_all(&bytes).map_err(error)?;
    file.as_file().sync_all().map_err(error)?;
    Ok(file)
}

fn last_lines(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(OUTPUT_LINES)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_as_awk_1_merges() {
        // Checked against awk itself: the operator's file without a final newline keeps its last line apart.
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let cases = [
            ("x=1\ny=2", "node.id=3\n"),
            ("x=1\n", "node.id=3\n"),
            ("", "node.id=3\n"),
            ("x=1\r\n#c", "node.id=3"),
        ];
        for (first, second) in cases {
            std::fs::write(&a, first).unwrap();
            std::fs::write(&b, second).unwrap();
            let awk = std::process::Command::new("awk")
                .arg("1")
                .args([&a, &b])
                .output()
                .expect("awk runs");
            assert_eq!(
                merge_as_awk(&[first, second]),
                String::from_utf8(awk.stdout).unwrap(),
                "{first:?} + {second:?}"
            );
        }
    }

    #[test]
    fn roles_and_the_quorum_kind_are_read_as_kafka_reads_them() {
        let read = |text: &str| ToolSettings::from_merged(text.into());
        let settings = read("process.roles=broker\n#process.roles=controller\n");
        assert!(!settings.controller);
        assert!(read("process.roles = broker, controller\n").controller);
        assert!(!read("process.roles=broker,controller\nprocess.roles=broker\n").controller);
        assert!(read("controller.quorum.bootstrap.servers=a:9093\n").dynamic);
        assert!(
            !read(
                "controller.quorum.bootstrap.servers=a:9093\ncontroller.quorum.voters=0@a:9093\n"
            )
            .dynamic
        );
    }

    #[test]
    fn storage_is_blank_only_when_every_log_dir_is() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        assert_eq!(
            assess(&[a.clone(), b.clone()]).unwrap(),
            StorageState::Blank
        );
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("meta.properties"), "version=1\nnode.id=1\n").unwrap();
        let error = assess(&[a.clone(), b.clone()]).unwrap_err();
        assert!(
            matches!(error, FormatError::PartlyFormatted { .. }),
            "{error}"
        );
        std::fs::create_dir_all(b.join("events-0")).unwrap();
        let error = assess(&[a.clone(), b.clone()]).unwrap_err().to_string();
        assert!(
            error.contains(&format!("log dir {} holds data (events-0)", b.display())),
            "{error}"
        );
        std::fs::write(b.join("meta.properties"), "version=1\nnode.id=1\n").unwrap();
        assert_eq!(assess(&[a, b]).unwrap(), StorageState::Formatted);
    }

    #[tokio::test]
    async fn the_command_gets_the_cluster_id_and_the_merged_file_and_must_stamp_every_dir() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.properties");
        std::fs::write(&server, "process.roles=broker,controller\nnode.id=-1").unwrap();
        let overlay = dir.path().join("conf/berth.properties");
        let log_dir = dir.path().join("data");
        let seen = dir.path().join("seen");
        // A stand-in storage tool: records its arguments, the file it was given and that file's mode, and stamps
        // the dir the file's last `log.dirs` names (the staging dir beside the log dir).
        let script = format!(
            "echo \"$@\" > {seen}; stat -c %a \"$4\" >> {seen}; cat \"$4\" >> {seen}; \
             staged=$(sed -n 's/^log.dirs=//p' \"$4\" | tail -1); mkdir -p \"$staged\"; \
             echo version=1 > \"$staged/meta.properties\"",
            seen = seen.display(),
        );
        let formatter = Formatter {
            command: vec!["/bin/sh".into(), "-c".into(), script, "format".into()],
            server_properties: server.clone(),
            unit: None,
        };
        let settings = formatter.settings("node.id=3\n").unwrap();
        assert!(settings.controller && settings.broker && !settings.dynamic);
        let command = formatter
            .format(
                "MkU3OEVBNTcwNTJENDM2Qg",
                &overlay,
                &settings,
                &[],
                std::slice::from_ref(&log_dir),
                FORMAT_MIN_TIME,
            )
            .await
            .expect("formatted");
        assert!(
            command.contains("--cluster-id MkU3OEVBNTcwNTJENDM2Qg --config "),
            "{command}"
        );
        let seen = std::fs::read_to_string(&seen).unwrap();
        let (args, file) = seen.split_once('\n').unwrap();
        let (mode, file) = file.split_once('\n').unwrap();
        assert_eq!(
            mode, "600",
            "the merged settings (with their secrets) are the owner's alone"
        );
        assert!(
            args.starts_with("--cluster-id MkU3OEVBNTcwNTJENDM2Qg --config "),
            "{args}"
        );
        assert_eq!(
            file,
            format!(
                "process.roles=broker,controller\nnode.id=-1\nnode.id=3\nlog.dirs={}\n",
                crate::staging::dir_beside(&log_dir).display()
            )
        );
        assert!(
            log_dir.join("meta.properties").exists(),
            "renamed into place"
        );
        assert!(!crate::staging::dir_beside(&log_dir).exists());
        let leftovers: Vec<_> = std::fs::read_dir(overlay.parent().unwrap())
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "the merged file is removed");
    }

    #[tokio::test]
    async fn a_command_that_stamps_nothing_is_not_believed_and_too_little_time_starts_none() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.properties");
        std::fs::write(
            &server,
            "process.roles=broker,controller
",
        )
        .unwrap();
        let overlay = dir.path().join("conf/berth.properties");
        let formatter = Formatter {
            command: vec!["/bin/true".into()],
            server_properties: server,
            unit: None,
        };
        let settings = formatter.settings("node.id=3\n").unwrap();
        let other = dir.path().join("other");
        let format = |timeout| {
            formatter.format(
                "MkU3OEVBNTcwNTJENDM2Qg",
                &overlay,
                &settings,
                &[],
                std::slice::from_ref(&other),
                timeout,
            )
        };
        // It succeeds without stamping the dir: nothing is moved in.
        let error = format(FORMAT_MIN_TIME).await.unwrap_err();
        assert!(!other.exists());
        assert!(matches!(error, FormatError::NotFormatted { .. }), "{error}");
        // Less than the tool's minimum time left: it is not started at all.
        let error = format(FORMAT_MIN_TIME - Duration::from_millis(1))
            .await
            .unwrap_err();
        assert!(
            matches!(error, FormatError::TooLittleTime { .. }),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::Retryable);
    }
}
