//! A real ZooKeeper server from Debian's `zookeeper` package, and a proxy that black-holes a connection.
//!
//! berth's claims are only as safe as its handling of a real server's sessions, elections and expiries, so the
//! tests run against the real thing: [`ZooKeeper`] starts one standalone server or a quorum of `QuorumPeerMain`
//! processes (tickTime 500 ms, so sessions can be as short as 1 s), on free ports of a chosen address, optionally
//! through a command prefix such as `ip netns exec <ns>` so a simulated fleet can run it inside a namespace. It
//! waits until `srvr` reports a mode (`ruok` answers before a quorum exists, so it proves nothing), can kill and
//! restart one node (the leader, found through `srvr`), and kills every process by PID in `Drop`.
//!
//! [`BlackHoleProxy`] sits between a client and a server and can stop forwarding without closing anything,
//! which is how a partition looks to both ends: the only way to make a session expire on the server while the
//! client still believes its connection is open.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Debian's server jar (its manifest's Class-Path brings jute, netty, and the rest).
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logger binding, so the server logs (with timestamps) instead of warning about a missing binding.
const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";
/// How long a server (or a quorum) may take to show a mode.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A harness failure, naming the node and the file or command concerned.
#[derive(Debug, thiserror::Error)]
pub enum ZkHarnessError {
    /// The Debian package is missing (`make test` installs it through scripts/setup.sh).
    #[error("{path} is missing: install Debian's zookeeper package (scripts/setup.sh)")]
    NotInstalled {
        /// The jar looked for.
        path: PathBuf,
    },
    /// A file of the server's could not be written.
    #[error("node {node}: cannot write {path}")]
    Write {
        /// Server id (1-based).
        node: u32,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The java process could not be started.
    #[error("node {node}: cannot start {command}")]
    Spawn {
        /// Server id (1-based).
        node: u32,
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The server did not report a mode in time.
    #[error("node {node} at {address}: no Mode in srvr after {waited:?} (log: {log})")]
    NotReady {
        /// Server id (1-based).
        node: u32,
        /// Its client address.
        address: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
    },
    /// A temporary directory could not be created.
    #[error("cannot create a temporary directory for ZooKeeper")]
    TempDir(#[source] io::Error),
}

/// What role `srvr` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A single server.
    Standalone,
    /// The quorum's leader.
    Leader,
    /// A quorum member following the leader.
    Follower,
    /// A non-voting member.
    Observer,
}

impl Mode {
    fn parse(srvr: &str) -> Option<Self> {
        let mode = srvr
            .lines()
            .find_map(|line| line.strip_prefix("Mode:"))?
            .trim();
        Some(match mode {
            "standalone" => Mode::Standalone,
            "leader" => Mode::Leader,
            "follower" => Mode::Follower,
            "observer" => Mode::Observer,
            _ => return None,
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
        })
    }
}

/// How to start ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZkOptions {
    /// 1 for a standalone server (`ZooKeeperServerMain`), 3 (or more) for a quorum (`QuorumPeerMain`).
    pub nodes: usize,
    /// The address every port listens on.
    pub bind: IpAddr,
    /// Words put before `java`, e.g. `["ip", "netns", "exec", "host-a"]`; also used for the `srvr` probe.
    pub command_prefix: Vec<String>,
    /// ZooKeeper's tick; sessions may last 2..20 ticks.
    pub tick_time: Duration,
}

impl Default for ZkOptions {
    fn default() -> Self {
        Self {
            nodes: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            command_prefix: Vec::new(),
            tick_time: Duration::from_millis(500),
        }
    }
}

struct Node {
    id: u32,
    client: SocketAddr,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
}

/// A running ZooKeeper server or quorum; every process is killed by PID when this is dropped.
pub struct ZooKeeper {
    options: ZkOptions,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    /// One standalone server on 127.0.0.1, ready.
    pub fn standalone() -> Result<Self, ZkHarnessError> {
        Self::start(ZkOptions::default())
    }

    /// A quorum of `nodes` servers on 127.0.0.1, ready (every node shows leader or follower).
    pub fn ensemble(nodes: usize) -> Result<Self, ZkHarnessError> {
        Self::start(ZkOptions {
            nodes,
            ..ZkOptions::default()
        })
    }

    /// Start with the given options and wait until every node reports a mode.
    pub fn start(options: ZkOptions) -> Result<Self, ZkHarnessError> {
        Self::prepare(options)?.launched()
    }

    /// Write the configuration of every node without starting any process (see [`ZooKeeper::restart`] to
    /// start a node later, e.g. to test a client that starts before ZooKeeper does).
    pub fn prepare(options: ZkOptions) -> Result<Self, ZkHarnessError> {
        for jar in [ZOOKEEPER_JAR, SLF4J_JAR] {
            if !Path::new(jar).exists() {
                return Err(ZkHarnessError::NotInstalled { path: jar.into() });
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-zk-")
            .tempdir()
            .map_err(ZkHarnessError::TempDir)?;
        let count = options.nodes.max(1);
        let quorum = count > 1;
        let ports: Vec<[u16; 3]> = (0..count)
            .map(|_| [0; 3].map(|_| free_port_on(options.bind)))
            .collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(index, [_, peer, election])| {
                format!("server.{}={}:{peer}:{election}\n", index + 1, options.bind)
            })
            .collect();
        let mut nodes = Vec::with_capacity(count);
        for (index, [client, _, _]) in ports.iter().enumerate() {
            let id = index as u32 + 1;
            let node_dir = dir.path().join(format!("node{id}"));
            let data = node_dir.join("data");
            let write = |path: PathBuf, text: String| {
                fs::create_dir_all(path.parent().unwrap_or(&node_dir))
                    .and_then(|()| fs::write(&path, text))
                    .map_err(|source| ZkHarnessError::Write {
                        node: id,
                        path,
                        source,
                    })
            };
            let mut config = format!(
                "tickTime={tick}\ndataDir={data}\nclientPort={client}\nclientPortAddress={bind}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,mntr,stat,cons\n\
                 maxClientCnxns=0\n",
                tick = options.tick_time.as_millis(),
                data = data.display(),
                bind = options.bind,
            );
            if quorum {
                config.push_str(
                    "initLimit=10\nsyncLimit=5\nstandaloneEnabled=false\ncnxTimeout=1000\n",
                );
                config.push_str(&servers);
                write(data.join("myid"), format!("{id}\n"))?;
            } else {
                fs::create_dir_all(&data).map_err(|source| ZkHarnessError::Write {
                    node: id,
                    path: data.clone(),
                    source,
                })?;
            }
            write(node_dir.join("zoo.cfg"), config)?;
            nodes.push(Node {
                id,
                client: SocketAddr::new(options.bind, *client),
                dir: node_dir,
                child: Mutex::new(None),
            });
        }
        Ok(Self {
            options,
            nodes,
            _dir: dir,
        })
    }

    fn launched(self) -> Result<Self, ZkHarnessError> {
        for index in 0..self.nodes.len() {
            self.spawn(index)?;
        }
        for index in 0..self.nodes.len() {
            self.wait_ready(index, START_TIMEOUT)?;
        }
        Ok(self)
    }

    fn spawn(&self, index: usize) -> Result<(), ZkHarnessError> {
        let node = &self.nodes[index];
        let main_class = if self.nodes.len() > 1 {
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        } else {
            "org.apache.zookeeper.server.ZooKeeperServerMain"
        };
        let java = [
            "java",
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp",
            &format!("{ZOOKEEPER_JAR}:{SLF4J_JAR}"),
            main_class,
            &node.config().display().to_string(),
        ];
        let words: Vec<&str> = self
            .options
            .command_prefix
            .iter()
            .map(String::as_str)
            .chain(java)
            .collect();
        let log_error = |source| ZkHarnessError::Write {
            node: node.id,
            path: node.log(),
            source,
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .map_err(log_error)?;
        let log2 = log.try_clone().map_err(log_error)?;
        let child = Command::new(words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| ZkHarnessError::Spawn {
                node: node.id,
                command: words.join(" "),
                source,
            })?;
        *lock(&node.child) = Some(child);
        Ok(())
    }

    /// Wait until node `index` (0-based) answers `srvr` with a mode.
    pub fn wait_ready(&self, index: usize, timeout: Duration) -> Result<Mode, ZkHarnessError> {
        let node = &self.nodes[index];
        let started = Instant::now();
        loop {
            if let Some(mode) = self.mode(index) {
                return Ok(mode);
            }
            if started.elapsed() > timeout {
                return Err(ZkHarnessError::NotReady {
                    node: node.id,
                    address: node.client,
                    waited: started.elapsed(),
                    log: node.log(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client connect string: `host:port,host:port,...`.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `index`'s client address.
    pub fn client_address(&self, index: usize) -> SocketAddr {
        self.nodes[index].client
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: there is at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `index`'s log file (server output with timestamps).
    pub fn log_path(&self, index: usize) -> PathBuf {
        self.nodes[index].log()
    }

    /// Node `index`'s process id while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        lock(&self.nodes[index].child).as_ref().map(Child::id)
    }

    /// The answer of a four-letter word (`srvr`, `mntr`, `cons`, ...) from node `index`.
    pub fn four_letter(&self, index: usize, word: &str) -> io::Result<String> {
        four_letter_word(self.nodes[index].client, word, &self.options.command_prefix)
    }

    /// Node `index`'s mode per `srvr`, or None when it is down or has no quorum.
    pub fn mode(&self, index: usize) -> Option<Mode> {
        self.four_letter(index, "srvr")
            .ok()
            .and_then(|text| Mode::parse(&text))
    }

    /// The index of the node that is currently leader (or the standalone server).
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&index| matches!(self.mode(index), Some(Mode::Leader | Mode::Standalone)))
    }

    /// Kill node `index` (SIGKILL by PID) and reap it; a node already down is left alone.
    pub fn kill(&self, index: usize) {
        if let Some(mut child) = lock(&self.nodes[index].child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `index` again (or for the first time after [`ZooKeeper::prepare`]) without waiting.
    pub fn start_node(&self, index: usize) -> Result<(), ZkHarnessError> {
        self.kill(index);
        self.spawn(index)
    }

    /// Kill node `index` if it runs, start it again and wait until it reports a mode.
    pub fn restart(&self, index: usize) -> Result<Mode, ZkHarnessError> {
        self.start_node(index)?;
        self.wait_ready(index, START_TIMEOUT)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A port free on `bind` a moment ago; when `bind` is not an address of this namespace (the server will run in
/// another one, where nothing listens yet), a port free on loopback here.
fn free_port_on(bind: IpAddr) -> u16 {
    TcpListener::bind((bind, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|_| crate::free_port())
}

/// Send a four-letter word to a server and read its answer. With a command prefix (another network namespace)
/// the word is sent by bash's `/dev/tcp` run through the prefix.
pub fn four_letter_word(
    address: SocketAddr,
    word: &str,
    command_prefix: &[String],
) -> io::Result<String> {
    if command_prefix.is_empty() {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(word.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        return Ok(answer);
    }
    let script = format!(
        "exec 3<>/dev/tcp/{}/{} && printf %s {word} >&3 && timeout 2 cat <&3",
        address.ip(),
        address.port()
    );
    let output = Command::new(&command_prefix[0])
        .args(&command_prefix[1..])
        .args(["bash", "-c", &script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A TCP proxy on 127.0.0.1 that forwards to one upstream and can black-hole every connection: while paused,
/// bytes are held (neither forwarded nor refused, nothing is closed), exactly as a partition looks to both ends.
pub struct BlackHoleProxy {
    address: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

struct ProxyShared {
    upstream: SocketAddr,
    paused: Mutex<bool>,
    resumed: Condvar,
    stopping: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl ProxyShared {
    /// Blocks while paused; false once the proxy is stopping.
    fn wait_open(&self) -> bool {
        let mut paused = lock(&self.paused);
        while *paused && !self.stopping.load(Ordering::SeqCst) {
            paused = self
                .resumed
                .wait(paused)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        !self.stopping.load(Ordering::SeqCst)
    }

    fn track(&self, stream: &TcpStream) {
        if let Ok(clone) = stream.try_clone() {
            lock(&self.streams).push(clone);
        }
    }
}

impl BlackHoleProxy {
    /// Listen on a free port of 127.0.0.1 and forward every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address = listener.local_addr()?;
        let shared = Arc::new(ProxyShared {
            upstream,
            paused: Mutex::new(false),
            resumed: Condvar::new(),
            stopping: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("blackhole-{}", address.port()))
            .spawn(move || accept_loop(listener, acceptor_shared))?;
        Ok(Self {
            address,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect (`127.0.0.1:<port>`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stop forwarding: connections stay open, bytes are held, new connections are accepted but not connected.
    pub fn pause(&self) {
        *lock(&self.shared.paused) = true;
    }

    /// Forward again (held bytes are delivered, as TCP retransmission would after a healed partition).
    pub fn resume(&self) {
        *lock(&self.shared.paused) = false;
        self.shared.resumed.notify_all();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        *lock(&self.shared.paused)
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.resumed.notify_all();
        for stream in lock(&self.shared.streams).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name("blackhole-conn".into())
            .spawn(move || {
                shared.track(&client);
                if !shared.wait_open() {
                    return;
                }
                let Ok(server) = TcpStream::connect(shared.upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                };
                shared.track(&server);
                let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let upstream_shared = Arc::clone(&shared);
                let forward = thread::spawn(move || pump(client_read, server, &upstream_shared));
                pump(server_read, client, &shared);
                let _ = forward.join();
            });
    }
}

/// Copy `from` to `to`, holding each chunk while the proxy is paused; closes both ways at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &ProxyShared) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if !shared.wait_open() || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_is_parsed_from_srvr() {
        let srvr = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(Mode::parse(srvr), Some(Mode::Follower));
        assert_eq!(
            Mode::parse("This ZooKeeper instance is not currently serving requests\n"),
            None
        );
    }
}
