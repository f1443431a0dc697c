//! `[kafka.security]`, `[kafka.controller_security]` and where secrets come from: every bad value names its key
//! (exit 78 in `berth check-config`), secrets are taken byte for byte and never shown, a secret in a file every
//! user may read is refused, systemd credentials win, and the TLS files are read when the configuration loads.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_config::{load_sources_in, parse, SaslMechanism, SecurityProtocol, Sources};

const BASE: &str = "[cluster]\nname = \"events\"\nbroker_count = 3\nkafka_cluster_id = \"MkU3OEVBNTcwNTJENDM2Qg\"\n\
                    [kafka]\nmode = \"kraft\"\n";

fn with(sections: &str) -> String {
    format!("{BASE}{sections}")
}

fn refused(text: &str, environment: &[(&str, &str)]) -> (String, String) {
    match parse(text, environment.iter().copied()) {
        Ok(_) => panic!("accepted: {text}"),
        Err(error) => (error.key().unwrap_or("").to_owned(), error.to_string()),
    }
}

const SASL_SSL: &str =
    "[kafka.security]\nprotocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
                        sasl_username = \"berth\"\ntls_ca_file = \"/etc/berth/kafka-ca.pem\"\n";
const PASSWORD: (&str, &str) = ("BERTH_KAFKA__SECURITY__SASL_PASSWORD", "0012e3");

/// A configuration's text, its environment, and the key its error must name.
type Case<'a> = (String, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn every_security_key_names_itself_when_its_value_is_bad() {
    let cases: &[Case] = &[
        (with("[kafka.security]\nprotocol = \"TLS\"\n"), &[], "kafka.security.protocol"),
        (
            with("[kafka.security]\nprotocol = \"SASL_SSL\"\ntls_ca_file = \"/ca.pem\"\n"),
            &[PASSWORD],
            "kafka.security.sasl_mechanism",
        ),
        (
            with("[kafka.security]\nprotocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"GSSAPI\"\n"),
            &[],
            "kafka.security.sasl_mechanism",
        ),
        (
            with(&SASL_SSL.replace("sasl_username = \"berth\"\n", "")),
            &[PASSWORD],
            "kafka.security.sasl_username",
        ),
        (with(SASL_SSL), &[], "kafka.security.sasl_password"),
        (
            with("[kafka.security]\nsasl_username = \"berth\"\n"),
            &[],
            "kafka.security.sasl_username",
        ),
        (
            with("[kafka.security]\nprotocol = \"SSL\"\n"),
            &[],
            "kafka.security.tls_ca_file",
        ),
        (
            with("[kafka.security]\nprotocol = \"SSL\"\ntls_ca_file = \"ca.pem\"\n"),
            &[],
            "kafka.security.tls_ca_file",
        ),
        (
            with("[kafka.security]\nprotocol = \"SSL\"\ntls_ca_file = \"/ca.pem\"\ntls_cert_file = \"/c.pem\"\n"),
            &[],
            "kafka.security.tls_key_file",
        ),
        (
            with("[kafka.security]\nprotocol = \"SSL\"\ntls_ca_file = \"/ca.pem\"\ntls_server_name = \"bad name!\"\n"),
            &[],
            "kafka.security.tls_server_name",
        ),
        (
            with("[kafka.security]\ntls_ca_file = \"/ca.pem\"\n"),
            &[],
            "kafka.security.tls_ca_file",
        ),
        (
            with("[kafka.controller_security]\nprotocol = \"SSL\"\n"),
            &[],
            "kafka.controller_security.tls_ca_file",
        ),
        (
            BASE.replace("mode = \"kraft\"", "mode = \"zookeeper\"")
                + "[kafka.controller_security]\nprotocol = \"PLAINTEXT\"\n[zookeeper]\nconnect = \"a:1\"\n",
            &[],
            "kafka.controller_security",
        ),
        (
            with(""),
            &[("BERTH_KAFKA__CONTROLLER_SECURITY__SASL_PASSWORD", "x")],
            "kafka.controller_security.sasl_password",
        ),
    ];
    for (text, environment, key) in cases {
        let (named, message) = refused(text, environment);
        assert_eq!(named, *key, "{message}\n{text}");
    }
}

#[test]
fn secrets_are_taken_byte_for_byte_and_never_shown() {
    // "0012e3" would be a number (12000) to the generic override parser.
    let config = parse(&with(SASL_SSL), [PASSWORD]).expect("valid");
    let security = &config.kafka.security;
    assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
    assert_eq!(security.sasl_mechanism, Some(SaslMechanism::ScramSha512));
    assert_eq!(security.sasl_password.expose(), "0012e3");
    assert_eq!(
        config.controller_security(),
        security,
        "the controllers' listener defaults to the same"
    );
    let shown = format!("{config:?}\n{}", config.to_toml());
    assert!(!shown.contains("0012e3"), "{shown}");
    let again = parse(&config.to_toml(), [PASSWORD]).expect("the effective configuration parses");
    assert_eq!(again, config);
}

/// A CA and a client certificate and key (each self-signed; berth-config only reads them), made with openssl.
fn material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    for (name, subject) in [("ca", "/CN=test CA"), ("client", "/CN=berth")] {
        let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
        let words = [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let output = Command::new("openssl")
            .args(words)
            .args([
                "-keyout", &key, "-out", &cert, "-days", "2", "-subj", subject,
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "openssl: {output:?}");
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    )
}

/// Loads `path` with `process` as the process environment and no environment file.
fn load_from(
    path: &Path,
    process: &[(String, String)],
) -> Result<berth_config::Loaded, berth_config::ConfigError> {
    let sources = Sources {
        file: path.to_owned(),
        env_file: None,
    };
    load_sources_in(&sources, process)
}

fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("berth.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn loading_reads_credentials_refuses_world_readable_secrets_and_checks_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = material(dir.path());
    let mtls = format!(
        "[kafka.security]\nprotocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-256\"\nsasl_username = \"berth\"\n\
         tls_ca_file = {ca:?}\ntls_cert_file = {cert:?}\n"
    );
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(
        credentials.join("kafka.security.sasl_password"),
        "from-systemd\n",
    )
    .unwrap();
    std::fs::copy(&key, credentials.join("kafka.security.tls_key")).unwrap();
    let environment = vec![
        (
            "CREDENTIALS_DIRECTORY".to_owned(),
            credentials.display().to_string(),
        ),
        (PASSWORD.0.to_owned(), "from-the-environment".to_owned()),
    ];
    let path = write_config(dir.path(), &with(&mtls), 0o644);
    let config = load_from(&path, &environment)
        .map(|loaded| loaded.config)
        .expect("credentials fill the password and the key");
    let security = &config.kafka.security;
    assert_eq!(
        security.sasl_password.expose(),
        "from-systemd",
        "a credential wins"
    );
    assert_eq!(
        security.tls_key_file.as_deref(),
        Some(credentials.join("kafka.security.tls_key").as_path())
    );

    // A secret in the file is refused while every user may read the file, and accepted once they may not.
    let in_file = with(&format!(
        "{mtls}tls_key_file = {key:?}\nsasl_password = \"in-the-file\"\n"
    ));
    let path = write_config(dir.path(), &in_file, 0o644);
    let error = load_from(&path, &[]).unwrap_err();
    assert_eq!(error.key(), Some("kafka.security.sasl_password"), "{error}");
    assert!(!error.to_string().contains("in-the-file"), "{error}");
    let path = write_config(dir.path(), &in_file, 0o640);
    assert_eq!(
        load_from(&path, &[])
            .unwrap()
            .config
            .kafka
            .security
            .sasl_password
            .expose(),
        "in-the-file"
    );

    // The TLS files: a key every user may read, a CA file without a certificate, a file that is not there.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = load_from(&path, &[]).unwrap_err();
    assert_eq!(error.key(), Some("kafka.security.tls_key_file"), "{error}");
    assert!(error.to_string().contains("mode 0644"), "{error}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let no_ca = in_file.replace(&format!("{ca:?}"), &format!("{key:?}"));
    let error = load_from(&write_config(dir.path(), &no_ca, 0o600), &[]).unwrap_err();
    assert_eq!(error.key(), Some("kafka.security.tls_ca_file"), "{error}");
    assert!(
        error.to_string().contains("holds no PEM certificate"),
        "{error}"
    );
    let absent = in_file.replace(&format!("{cert:?}"), "\"/nonexistent/client.pem\"");
    let error = load_from(&write_config(dir.path(), &absent, 0o600), &[]).unwrap_err();
    assert_eq!(error.key(), Some("kafka.security.tls_cert_file"), "{error}");
}
