//! kafka-standin: a stand-in for Apache Kafka in berth's tests. It is NOT Kafka.
//!
//! Apache Kafka cannot be installed where berth's tests run, yet berth's Kafka adapter must be tested against a
//! process that behaves as Kafka does at the points berth relies on. The stand-in honours Kafka's startup
//! contract and nothing more:
//! - reads the properties files it is given (later files and `--override`s win, as berth's overlay does);
//! - refuses a log dir whose `meta.properties` names another broker (or cluster), exiting 1 with the text
//!   Kafka 3.9 and 4.x print; in ZooKeeper mode writes `meta.properties` where absent, in KRaft mode refuses to
//!   start unless `kafka-standin format --cluster-id ID --config FILE` (Kafka's storage tool) formatted the dirs;
//! - in ZooKeeper mode, gets or creates `/cluster/id` and registers the ephemeral `/brokers/ids/<id>` with
//!   Kafka's version 5 JSON; when its session expires (a ZooKeeper outage), it keeps serving and registers
//!   again on a new session once ZooKeeper answers, as Kafka's ZooKeeper mode does (KafkaZkClient re-creates
//!   the session and `registerBroker` runs again);
//! - listens on the advertised listener and answers ApiVersions and Metadata (brokers = itself);
//! - on SIGTERM or SIGINT, deregisters and exits 0 (a controlled shutdown).
//!
//! `--start-delay` (or `KAFKA_STANDIN_START_DELAY`) stretches startup after the log dirs are checked, as log
//! recovery does. It stores no records: a simulated fleet writes data on the mounted volume directly.
//! Properties are read with the `java-properties` crate, not berth's reader, and the wire is its own.

mod meta;
mod registry;
mod server;
mod settings;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use zookeeper_client as zk;

use crate::registry::Registry;
use crate::settings::{Mode, Settings};

/// Environment variable with the start delay (`2s`, `500ms`), when `--start-delay` is not given.
const DELAY_ENV: &str = "KAFKA_STANDIN_START_DELAY";

/// A stand-in for Apache Kafka in berth's tests (NOT Kafka): reads Kafka's properties, checks and writes
/// meta.properties, registers /brokers/ids/<id> in ZooKeeper mode, answers ApiVersions and Metadata on the
/// advertised listener, and deregisters on SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "kafka-standin", version)]
struct Args {
    /// Properties files, read in order (later keys win), e.g. server.properties then berth's overlay.
    #[arg(required = true)]
    properties: Vec<PathBuf>,
    /// A setting applied after all files, as Kafka's `--override key=value`.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Extra startup time after the log dirs are checked (`2s`, `500ms`); also KAFKA_STANDIN_START_DELAY.
    #[arg(long, value_name = "DURATION")]
    start_delay: Option<String>,
}

/// Why the stand-in stops at startup; the texts follow Kafka's own exceptions, which berth reports.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// A setting is missing or malformed.
    #[error("org.apache.kafka.common.config.ConfigException: {0}")]
    Config(String),
    /// A log dir belongs to another broker (Kafka 3.9 and 4.x: `MetaPropertiesEnsemble.verify`, both modes).
    #[error(
        "java.lang.RuntimeException: Stored node id {stored} doesn't match previous node id {configured} in \
         {}. If you moved your data, make sure your configured node id matches. If you intend to create a new \
         node, you should remove all data in your data directories.",
        path.display()
    )]
    NodeIdMismatch {
        /// The stored id.
        stored: String,
        /// The configured id.
        configured: i32,
        /// The meta.properties file.
        path: PathBuf,
    },
    /// A log dir belongs to another cluster (ZooKeeper's cluster id, or another log dir's).
    #[error(
        "java.lang.RuntimeException: Invalid cluster.id in: {}. Expected {expected}, but read {stored}",
        path.display()
    )]
    ClusterIdMismatch {
        /// The meta.properties file.
        path: PathBuf,
        /// The cluster id expected.
        expected: String,
        /// The stored id.
        stored: String,
    },
    /// KRaft mode with no formatted log dir.
    #[error("java.lang.RuntimeException: No readable meta.properties files found.")]
    NotFormatted,
    /// `format` on a dir that is formatted already (the storage tool's words).
    #[error(
        "Log directory {} is already formatted. Use --ignore-formatted to ignore this directory and format the \
         others.",
        dir.display()
    )]
    AlreadyFormatted {
        /// The log dir.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("java.io.IOException: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The listener could not be bound.
    #[error("org.apache.kafka.common.KafkaException: Socket server failed to bind to {address}: {source}.")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A ZooKeeper request failed.
    #[error("org.apache.zookeeper.KeeperException: {op} {path}: {source}")]
    ZooKeeper {
        /// The request.
        op: &'static str,
        /// The znode or ensemble.
        path: String,
        /// The client's error.
        source: zk::Error,
    },
    /// Another session still holds the registration.
    #[error(
        "org.apache.zookeeper.KeeperException$NodeExistsException: Error while creating ephemeral at {path}, \
         node already exists and owner does not match current session"
    )]
    AlreadyRegistered {
        /// The znode.
        path: String,
    },
}

impl Fatal {
    fn config(message: String) -> Self {
        Fatal::Config(message)
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        Fatal::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn parse_delay(text: &str) -> Result<Duration, Fatal> {
    berth_core::duration::parse_duration(text)
        .map_err(|reason| Fatal::config(format!("start delay: {reason}")))
}

/// `kafka-standin format`: Kafka's storage tool (`kafka-storage.sh format`), for a static quorum.
#[derive(Debug, Parser)]
#[command(name = "kafka-standin format")]
struct FormatArgs {
    /// The cluster id to stamp.
    #[arg(long = "cluster-id", short = 't')]
    cluster_id: String,
    /// The broker's properties (process.roles, node.id, log.dirs).
    #[arg(long, short = 'c')]
    config: PathBuf,
}

fn read_properties(paths: &[PathBuf]) -> Result<settings::Properties, Fatal> {
    let mut properties = settings::Properties::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| Fatal::io(path, source))?;
        settings::read_into(&bytes, &mut properties)
            .map_err(|reason| Fatal::config(format!("{}: {reason}", path.display())))?;
    }
    Ok(properties)
}

fn run_format(args: FormatArgs) -> Result<(), Fatal> {
    let settings = Settings::from_properties(&read_properties(&[args.config])?)?;
    if settings.mode != Mode::Kraft {
        return Err(Fatal::config(
            "The kafka configuration file appears to be for a legacy cluster. Formatting is only supported \
             for clusters in KRaft mode."
                .into(),
        ));
    }
    for line in meta::format(&settings, &args.cluster_id)? {
        println!("{line}");
    }
    Ok(())
}

fn read_settings(args: &Args) -> Result<Settings, Fatal> {
    let mut properties = read_properties(&args.properties)?;
    for item in &args.overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| Fatal::config(format!("--override {item:?} is not key=value")))?;
        properties.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Settings::from_properties(&properties)
}

async fn run(args: Args) -> Result<(), Fatal> {
    let settings = read_settings(&args)?;
    let delay = match args
        .start_delay
        .clone()
        .or_else(|| std::env::var(DELAY_ENV).ok())
    {
        Some(text) => parse_delay(&text)?,
        None => Duration::ZERO,
    };
    let tag = format!("[KafkaStandIn id={}]", settings.id);
    println!("INFO {tag} starting (a stand-in for Kafka in berth's tests, not Kafka)");

    let (registry, cluster_id) = match &settings.mode {
        Mode::Zookeeper {
            hosts,
            chroot,
            session_timeout,
        } => {
            let registry = Registry::connect(hosts, chroot, *session_timeout).await?;
            let cluster_id = registry.cluster_id().await?;
            println!("INFO {tag} Cluster ID = {cluster_id}");
            (Some(registry), Some(cluster_id))
        }
        Mode::Kraft => (None, None),
    };
    let kraft = settings.mode == Mode::Kraft;
    let cluster_id = meta::check_and_stamp(
        &settings.log_dirs,
        settings.id,
        kraft,
        cluster_id.as_deref(),
    )?;
    if !delay.is_zero() {
        println!("INFO {tag} start delay {delay:?} (simulated log recovery)");
        tokio::time::sleep(delay).await;
    }
    let (server, registered) =
        start_serving(&settings, &tag, registry.as_ref(), cluster_id).await?;
    let (registry, registered) = serve_until_stopped(&settings, &tag, registry, registered).await?;
    println!("INFO {tag} shutting down");
    server.abort();
    if let (Some(registry), Some(path)) = (registry, registered) {
        registry.deregister(&path).await;
    }
    println!("INFO {tag} shut down completed");
    Ok(())
}

/// Binds the listener, registers in ZooKeeper (when in ZooKeeper mode) and only then serves, as Kafka does (a
/// client connecting in between waits in the accept queue): the server's task and the registration's znode.
async fn start_serving(
    settings: &Settings,
    tag: &str,
    registry: Option<&Registry>,
    cluster_id: Option<String>,
) -> Result<(tokio::task::JoinHandle<()>, Option<String>), Fatal> {
    let listener = TcpListener::bind(settings.bind)
        .await
        .map_err(|source| Fatal::Bind {
            address: settings.bind.to_string(),
            source,
        })?;
    let identity = Arc::new(server::Identity {
        id: settings.id,
        host: settings.advertised.host.clone(),
        port: settings.advertised.port,
        rack: settings.rack.clone(),
        cluster_id,
    });
    let registered = match registry {
        Some(registry) => {
            let path = registry.register(settings).await?;
            println!(
                "INFO {tag} registered {path} at {}://{}:{}",
                settings.advertised.name, settings.advertised.host, settings.advertised.port
            );
            Some(path)
        }
        None => None,
    };
    let server = tokio::spawn(server::serve(listener, identity));
    println!("INFO {tag} started (listening on {})", settings.bind);
    Ok((server, registered))
}

/// Serves until SIGTERM or SIGINT; a ZooKeeper session that expires meanwhile is replaced and the broker
/// registered again on the new one, as Kafka does. The registry and registration in use at the end.
async fn serve_until_stopped(
    settings: &Settings,
    tag: &str,
    mut registry: Option<Registry>,
    mut registered: Option<String>,
) -> Result<(Option<Registry>, Option<String>), Fatal> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|source| Fatal::io(Path::new("SIGTERM"), source))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|source| Fatal::io(Path::new("SIGINT"), source))?;
    loop {
        let mut session = registry.as_ref().map(Registry::state_watcher);
        let expired = async {
            match session.as_mut() {
                Some(watcher) => loop {
                    if watcher.changed().await.is_terminated() {
                        break;
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = expired => {}
        }
        println!("WARN {tag} ZooKeeper session expired: registering again on a new session, still serving");
        // The expired session's registration is gone with it: nothing to deregister until a new one is made.
        registered = None;
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            (next, path) = register_again(settings, tag) => {
                println!("INFO {tag} registered {path} again");
                registry = Some(next);
                registered = Some(path);
            }
        }
    }
    Ok((registry, registered))
}

/// A new session and registration after the old session expired, retried (every second) until ZooKeeper answers
/// and the previous registration has gone.
async fn register_again(settings: &Settings, tag: &str) -> (Registry, String) {
    let Mode::Zookeeper {
        hosts,
        chroot,
        session_timeout,
    } = &settings.mode
    else {
        return std::future::pending().await;
    };
    loop {
        let attempt = async {
            let registry = Registry::connect(hosts, chroot, *session_timeout).await?;
            let path = registry.register(settings).await?;
            Ok::<_, Fatal>((registry, path))
        };
        match attempt.await {
            Ok(done) => return done,
            Err(error) => println!("WARN {tag} not registered yet: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("format") {
        let args = FormatArgs::parse_from(std::env::args().skip(1));
        return match run_format(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "ERROR Fatal error during KafkaServer startup. Prepare to shutdown (kafka-standin)"
            );
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
