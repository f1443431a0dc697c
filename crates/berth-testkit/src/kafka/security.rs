//! Security material a test makes for itself, and the clients that use it: a certificate authority and
//! certificates from Debian's `openssl` (EC P-256 keys, subject alternative names for the brokers' addresses,
//! PKCS#8 keys that Kafka reads as PEM keystores), SCRAM users added by Kafka's storage tool at format time
//! (`--add-scram`), and the settings of Kafka's Java tools and of kcat for a secured listener.
//!
//! kcat: Debian's librdkafka (2.0.2) repeats the client nonce in SCRAM's final message, which Kafka 4.x refuses
//! ("invalid credentials"; fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895). `scripts/setup.sh` puts a
//! newer librdkafka (the self-contained one of PyPI's `confluent-kafka` wheel) under
//! `$BERTH_CACHE/librdkafka/`, and a secured [`super::Client`] runs kcat with it ([`librdkafka_dir`]).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{io_error, run, Client, KafkaHarnessError, Result, TOOL_TIMEOUT};

/// A certificate authority of the test's own, in a directory the test owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    dir: PathBuf,
}

/// A certificate the [`Pki`] issued, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// Key then certificate in one PEM file: a Kafka keystore (`ssl.keystore.type=PEM`), mode 0600.
    pub bundle: PathBuf,
    /// The principal Kafka derives from it (`CN=<name>`).
    pub principal: String,
}

fn openssl(words: &[&str]) -> Result<()> {
    let words: Vec<String> = std::iter::once("openssl")
        .chain(words.iter().copied())
        .map(str::to_owned)
        .collect();
    run(&[], &words, None, TOOL_TIMEOUT).map(|_| ())
}

/// A new P-256 key (mode 0600) and, for `CN=<name>`, a request, or with `-x509` a self-signed certificate.
fn new_key(key: &Path, out: &Path, name: &str, extra: &[&str]) -> Result<()> {
    let (key_path, out_path, subject) = (
        key.display().to_string(),
        out.display().to_string(),
        format!("/CN={name}"),
    );
    let mut words = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    words.extend(["-keyout", &key_path, "-out", &out_path, "-subj", &subject]);
    words.extend(extra);
    openssl(&words)?;
    owner_only(key)
}

fn owner_only(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error(path))
}

impl Pki {
    /// Creates a CA (`CN=<name>`) in `dir`.
    pub fn create(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let pki = Self {
            dir: dir.to_owned(),
        };
        new_key(
            &pki.path("ca.key"),
            &pki.ca(),
            name,
            &[
                "-x509",
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        Ok(pki)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA certificate (PEM): the truststore of brokers and clients.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Issues a certificate for `name` (`CN=<name>`), valid for server and client use, carrying `addresses` and
    /// `dns_names` as subject alternative names.
    pub fn issue(&self, name: &str, addresses: &[IpAddr], dns_names: &[&str]) -> Result<Issued> {
        let (key, csr, cert, bundle, extensions) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.keystore.pem")),
            self.path(&format!("{name}.ext")),
        );
        new_key(&key, &csr, name, &[])?;
        let mut text = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        );
        let names: Vec<String> = addresses
            .iter()
            .map(|ip| format!("IP:{ip}"))
            .chain(dns_names.iter().map(|dns| format!("DNS:{dns}")))
            .collect();
        if !names.is_empty() {
            let _ = writeln!(text, "subjectAltName={}", names.join(","));
        }
        std::fs::write(&extensions, text).map_err(io_error(&extensions))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr.display().to_string(),
            "-CA",
            &self.ca().display().to_string(),
            "-CAkey",
            &self.path("ca.key").display().to_string(),
            "-CAcreateserial",
            "-out",
            &cert.display().to_string(),
            "-days",
            "30",
            "-extfile",
            &extensions.display().to_string(),
        ])?;
        let read = |path: &Path| std::fs::read_to_string(path).map_err(io_error(path));
        let keystore = format!("{}{}", read(&key)?, read(&cert)?);
        std::fs::write(&bundle, keystore).map_err(io_error(&bundle))?;
        owner_only(&bundle)?;
        Ok(Issued {
            cert,
            key,
            bundle,
            principal: format!("CN={name}"),
        })
    }
}

/// A SCRAM user for Kafka's storage tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

impl ScramUser {
    /// A user of `mechanism`.
    pub fn new(mechanism: &str, name: &str, password: &str) -> Self {
        Self {
            mechanism: mechanism.into(),
            name: name.into(),
            password: password.into(),
        }
    }
}

/// The storage tool's arguments that add `users` at format time (`--add-scram 'MECH=[name="u",password="p"]'`;
/// unquoted values are not what Kafka stores).
pub fn add_scram_arguments(users: &[ScramUser]) -> Vec<String> {
    users
        .iter()
        .flat_map(|user| {
            [
                "--add-scram".to_owned(),
                format!(
                    "{}=[name=\"{}\",password=\"{}\"]",
                    user.mechanism, user.name, user.password
                ),
            ]
        })
        .collect()
}

/// How a client authenticates to a secured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `SASL_SSL` with SCRAM (`mechanism`), trusting `ca`.
    SaslSsl {
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        mechanism: String,
        /// User name.
        user: String,
        /// Password.
        password: String,
        /// CA bundle.
        ca: PathBuf,
    },
    /// `SSL` with a client certificate, trusting `ca`.
    Ssl {
        /// CA bundle.
        ca: PathBuf,
        /// The client's certificate and key.
        client: Issued,
    },
}

impl ClientAuth {
    /// The settings of Kafka's Java clients (a `--command-config` file's text).
    pub fn java_properties(&self) -> String {
        match self {
            ClientAuth::SaslSsl {
                mechanism,
                user,
                password,
                ca,
            } => format!(
                "security.protocol=SASL_SSL\nsasl.mechanism={mechanism}\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"{user}\" password=\"{password}\";\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                ca.display()
            ),
            ClientAuth::Ssl { ca, client } => format!(
                "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n\
                 ssl.keystore.type=PEM\nssl.keystore.location={}\n",
                ca.display(),
                client.bundle.display()
            ),
        }
    }

    /// kcat's `-X` settings (librdkafka's names).
    pub fn kcat_settings(&self) -> Vec<String> {
        let pairs: Vec<String> = match self {
            ClientAuth::SaslSsl {
                mechanism,
                user,
                password,
                ca,
            } => vec![
                "security.protocol=SASL_SSL".into(),
                format!("sasl.mechanisms={mechanism}"),
                format!("sasl.username={user}"),
                format!("sasl.password={password}"),
                format!("ssl.ca.location={}", ca.display()),
            ],
            ClientAuth::Ssl { ca, client } => vec![
                "security.protocol=SSL".into(),
                format!("ssl.ca.location={}", ca.display()),
                format!("ssl.certificate.location={}", client.cert.display()),
                format!("ssl.key.location={}", client.key.display()),
            ],
        };
        pairs
            .into_iter()
            .flat_map(|pair| ["-X".to_owned(), pair])
            .collect()
    }

    /// Writes [`ClientAuth::java_properties`] to `path` (mode 0600) for `--command-config`.
    pub fn write_command_config(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, self.java_properties()).map_err(io_error(path))?;
        owner_only(path)?;
        Ok(path.to_owned())
    }
}

/// The directory holding the librdkafka (≥ 2.6.1) a secured kcat runs with, as `scripts/setup.sh` installs it.
pub fn librdkafka_dir() -> Result<PathBuf> {
    let dir = super::cache_root().join("librdkafka/lib");
    if dir.join("librdkafka.so.1").exists() {
        Ok(dir)
    } else {
        Err(KafkaHarnessError::MissingProgram {
            program: dir.join("librdkafka.so.1").display().to_string(),
            package: "confluent-kafka (PyPI; scripts/setup.sh extracts its librdkafka)",
        })
    }
}

/// A secured client's settings: Kafka's tools read `command_config`, kcat takes `-X` settings and runs with a
/// librdkafka that speaks SCRAM to Kafka 4.x ([`librdkafka_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Secured {
    command_config: PathBuf,
    kcat: Vec<String>,
    librdkafka: PathBuf,
}

impl Secured {
    /// `--command-config FILE` for Kafka's tools.
    pub(super) fn command_config(&self) -> [String; 2] {
        [
            "--command-config".to_owned(),
            self.command_config.display().to_string(),
        ]
    }
}

impl Client {
    /// The same client, authenticating as `auth` (its Java settings written to `command_config`, mode 0600).
    pub fn secured(mut self, auth: &ClientAuth, command_config: &Path) -> Result<Self> {
        self.secured = Some(Secured {
            command_config: auth.write_command_config(command_config)?,
            kcat: auth.kcat_settings(),
            librdkafka: librdkafka_dir()?,
        });
        Ok(self)
    }

    /// A Kafka tool (`tool CLASS` or a launcher subcommand) against this client's bootstrap, with its security.
    pub fn tool(&self, subcommand: &[&str], arguments: &[&str]) -> Result<String> {
        let mut words = self.install.command(subcommand[0]);
        words.extend(subcommand[1..].iter().map(|w| (*w).to_owned()));
        words.extend(["--bootstrap-server".to_owned(), self.bootstrap.clone()]);
        if let Some(secured) = &self.secured {
            words.extend(secured.command_config());
        }
        words.extend(arguments.iter().map(|w| (*w).to_owned()));
        let output = run(&self.prefix, &words, None, TOOL_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kafka's ACL tool (`AclCommand`) with `arguments`, e.g. `--add --allow-principal User:berth ...`.
    pub fn acl(&self, arguments: &[&str]) -> Result<String> {
        self.tool(&["tool", "org.apache.kafka.tools.AclCommand"], arguments)
    }

    /// kcat's first words: the program (with the newer librdkafka when secured), then its security settings.
    pub(super) fn kcat_words(&self) -> Result<Vec<String>> {
        let kcat = Self::kcat()?.to_owned();
        Ok(match &self.secured {
            None => vec![kcat],
            Some(secured) => {
                let mut words = vec![
                    "/usr/bin/env".to_owned(),
                    format!("LD_LIBRARY_PATH={}", secured.librdkafka.display()),
                    kcat,
                ];
                words.extend(secured.kcat.iter().cloned());
                words
            }
        })
    }
}

/// What a secured cluster's brokers and clients listen and authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecuredListeners {
    /// Clients and brokers on `SASL_SSL` with SCRAM-SHA-512; controllers on `SSL` with client certificates.
    SaslSsl,
    /// Clients and brokers on `SSL` with client certificates (mutual TLS); controllers likewise.
    MutualTls,
}

/// Where a host keeps the material (inside the host).
pub const KAFKA_TLS_DIR: &str = "/etc/kafka/tls";
/// berth's certificate directory on a host.
pub const BERTH_TLS_DIR: &str = "/etc/berth/tls";
/// berth's secrets directory on a host (the sources of its systemd credentials).
pub const BERTH_SECRETS_DIR: &str = "/etc/berth/secrets";
/// Where a host keeps berth.service's drop-in loading them (docs/operations.md, "Secrets").
pub const BERTH_SECRETS_DROPIN: &str = "/etc/systemd/system/berth.service.d/secrets.conf";

/// One file to put on every host: path, content, mode, owner (`user:group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// Absolute path on the host.
    pub path: String,
    /// Content.
    pub content: String,
    /// Mode.
    pub mode: u32,
    /// `chown` argument.
    pub owner: &'static str,
}

/// The security of a simulated cluster: a CA, one broker certificate valid for every broker address, berth's and
/// a client's certificates, SCRAM users and their passwords, and the settings that use them (the operator's
/// `server.properties` lines, berth's sections and systemd credentials, the clients' settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSecurity {
    /// Which listeners.
    pub listeners: SecuredListeners,
    /// The CA.
    pub pki: Pki,
    /// The brokers' certificate (every broker address as an IP subject alternative name).
    pub broker: Issued,
    /// berth's client certificate (`CN=berth`).
    pub berth: Issued,
    /// The test's clients' certificate (`CN=client`).
    pub client: Issued,
}

/// The SCRAM passwords of the brokers, berth and the test's clients (secrets the tests look for everywhere).
pub const BROKER_PASSWORD: &str = "scram-broker-5d41402a";
/// berth's SCRAM-SHA-512 password.
pub const BERTH_PASSWORD: &str = "scram-berth-7d793037";
/// The test's clients' SCRAM-SHA-512 password.
pub const CLIENT_PASSWORD: &str = "scram-client-9e107d9d";
/// berth's password after a test rotates it (docs/operations.md, "Rotating a Kafka password").
pub const BERTH_ROTATED_PASSWORD: &str = "scram-berth-rotated-1f0e3dad";

impl ClusterSecurity {
    /// Makes the material in `dir` for brokers at `addresses`.
    pub fn create(dir: &Path, listeners: SecuredListeners, addresses: &[IpAddr]) -> Result<Self> {
        let pki = Pki::create(dir, "berth-sim CA")?;
        Ok(Self {
            listeners,
            broker: pki.issue("broker", addresses, &[])?,
            berth: pki.issue("berth", &[], &[])?,
            client: pki.issue("client", &[], &[])?,
            pki,
        })
    }

    /// Every secret a host is given: what must appear in no journal, no `/state`, no `check-config` output.
    pub fn secrets(&self) -> Vec<String> {
        let key = |issued: &Issued| std::fs::read_to_string(&issued.key).unwrap_or_default();
        let mut secrets: Vec<String> = [
            BROKER_PASSWORD,
            BERTH_PASSWORD,
            BERTH_ROTATED_PASSWORD,
            CLIENT_PASSWORD,
        ]
        .map(str::to_owned)
        .to_vec();
        // A private key's base64 lines (the PEM armour is not secret).
        for issued in [&self.broker, &self.berth] {
            secrets.extend(
                key(issued)
                    .lines()
                    .filter(|line| !line.starts_with("-----") && line.len() > 40)
                    .map(str::to_owned),
            );
        }
        secrets
    }

    /// The SCRAM users the storage tool adds when a blank volume is formatted.
    pub fn scram_users(&self) -> Vec<ScramUser> {
        match self.listeners {
            SecuredListeners::SaslSsl => vec![
                ScramUser::new("SCRAM-SHA-512", "broker", BROKER_PASSWORD),
                ScramUser::new("SCRAM-SHA-512", "berth", BERTH_PASSWORD),
                ScramUser::new("SCRAM-SHA-512", "client", CLIENT_PASSWORD),
            ],
            SecuredListeners::MutualTls => Vec::new(),
        }
    }

    /// The operator's `server.properties` lines for the listeners on `port` (clients and brokers) and
    /// `controller_port`, both bound to every address, with the authorizer and the super users (the brokers and the
    /// test's clients; berth gets only the ACLs a test grants).
    pub fn server_properties(&self, port: u16, controller_port: u16) -> String {
        let (protocol, sasl) = match self.listeners {
            SecuredListeners::SaslSsl => (
                "SASL_SSL",
                format!(
                    "sasl.enabled.mechanisms=SCRAM-SHA-512\nsasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n\
                     listener.name.internal.scram-sha-512.sasl.jaas.config=\
                     org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"broker\" password=\"{BROKER_PASSWORD}\";\n"
                ),
            ),
            SecuredListeners::MutualTls => (
                "SSL",
                "listener.name.internal.ssl.client.auth=required\n".to_owned(),
            ),
        };
        format!(
            "listeners=INTERNAL://0.0.0.0:{port},CONTROLLER://0.0.0.0:{controller_port}\n\
             listener.security.protocol.map=INTERNAL:{protocol},CONTROLLER:SSL\n\
             inter.broker.listener.name=INTERNAL\ncontroller.listener.names=CONTROLLER\n\
             {sasl}listener.name.controller.ssl.client.auth=required\n\
             ssl.keystore.type=PEM\nssl.keystore.location={KAFKA_TLS_DIR}/broker.pem\n\
             ssl.truststore.type=PEM\nssl.truststore.location={KAFKA_TLS_DIR}/ca.pem\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:broker;User:CN=broker;User:client;User:CN=client\n"
        )
    }

    /// berth's systemd credentials: (credential name, the host file it is loaded from). The SCRAM password with
    /// `SASL_SSL`; the client key for the controllers' listener, and for the client listener with mutual TLS.
    pub fn berth_credentials(&self) -> Vec<(&'static str, String)> {
        let key = format!("{BERTH_TLS_DIR}/berth.key");
        let mut credentials = vec![("kafka.controller_security.tls_key", key.clone())];
        match self.listeners {
            SecuredListeners::SaslSsl => credentials.push((
                "kafka.security.sasl_password",
                format!("{BERTH_SECRETS_DIR}/kafka-password"),
            )),
            SecuredListeners::MutualTls => credentials.push(("kafka.security.tls_key", key)),
        }
        credentials
    }

    /// berth.service's drop-in loading its secrets as systemd credentials ([`BERTH_SECRETS_DROPIN`]): one
    /// `LoadCredential=` line per secret this cluster uses, as docs/operations.md gives them.
    pub fn berth_credentials_dropin(&self) -> String {
        let mut text = String::from("[Service]\n");
        for (credential, path) in self.berth_credentials() {
            let _ = writeln!(text, "LoadCredential={credential}:{path}");
        }
        text
    }

    /// The files every host gets: Kafka's keystore and truststore (Kafka's user reads them), berth's certificate,
    /// key and password (root's alone).
    pub fn host_files(&self) -> Result<Vec<HostFile>> {
        let file = |path: String, source: &Path, mode: u32, owner: &'static str| {
            let content = std::fs::read_to_string(source).map_err(io_error(source))?;
            Ok(HostFile {
                path,
                content,
                mode,
                owner,
            })
        };
        let mut files = vec![
            file(
                format!("{KAFKA_TLS_DIR}/ca.pem"),
                &self.pki.ca(),
                0o644,
                "root:root",
            )?,
            file(
                format!("{KAFKA_TLS_DIR}/broker.pem"),
                &self.broker.bundle,
                0o640,
                "root:kafka",
            )?,
            file(
                format!("{BERTH_TLS_DIR}/berth.pem"),
                &self.berth.cert,
                0o644,
                "root:root",
            )?,
            file(
                format!("{BERTH_TLS_DIR}/berth.key"),
                &self.berth.key,
                0o600,
                "root:root",
            )?,
        ];
        if self.listeners == SecuredListeners::SaslSsl {
            files.push(HostFile {
                path: format!("{BERTH_SECRETS_DIR}/kafka-password"),
                content: format!("{BERTH_PASSWORD}\n"),
                mode: 0o600,
                owner: "root:root",
            });
        }
        Ok(files)
    }

    /// The operator's storage-tool wrapper (root's alone, mode 0700): Kafka's `storage_tool` formatting with the
    /// SCRAM users added, so no password is in berth's `format_command` (which berth logs).
    pub fn format_wrapper(&self, storage_tool: &str) -> String {
        let users: Vec<String> = add_scram_arguments(&self.scram_users())
            .iter()
            .map(|word| format!("'{word}'"))
            .collect();
        format!(
            "#!/bin/sh
# The operator's wrapper: format with the cluster's SCRAM users.
exec {storage_tool} format {} \"$@\"\n",
            users.join(" ")
        )
    }

    /// How the test's clients (kcat, Kafka's tools) authenticate: as `client`, a super user.
    pub fn client_auth(&self) -> ClientAuth {
        match self.listeners {
            SecuredListeners::SaslSsl => ClientAuth::SaslSsl {
                mechanism: "SCRAM-SHA-512".into(),
                user: "client".into(),
                password: CLIENT_PASSWORD.into(),
                ca: self.pki.ca(),
            },
            SecuredListeners::MutualTls => ClientAuth::Ssl {
                ca: self.pki.ca(),
                client: self.client.clone(),
            },
        }
    }

    /// berth's principal on the client listener, as ACLs name it.
    pub fn berth_principal(&self) -> &'static str {
        match self.listeners {
            SecuredListeners::SaslSsl => "User:berth",
            SecuredListeners::MutualTls => "User:CN=berth",
        }
    }
}
