//! The client's half of SASL PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677), as Kafka's
//! SaslAuthenticate carries them.
//!
//! SCRAM's primitives (HMAC, PBKDF2, SHA-2, the random nonce, the constant-time comparison) are aws-lc-rs's, the
//! library rustls uses here; this module only builds and checks the messages. The server's final message is
//! verified, so a listener that does not know the password cannot pass for one that does. Kafka 4.x checks the
//! nonce strictly (clients that repeated the client nonce, e.g. librdkafka before 2.6.1, are refused there), so
//! the unit tests hold this code to RFC 7677's own example.

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::Engine as _;
use berth_core::security::{SaslMechanism, Secret};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The fewest PBKDF2 iterations berth accepts from a server (Kafka's own minimum for SCRAM credentials); fewer
/// would let a listener that lies weaken the password's protection.
pub const MIN_ITERATIONS: u32 = 4096;

/// A SASL exchange that cannot go on: what was wrong, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SaslError(pub String);

/// SCRAM's hash, with its HMAC and PBKDF2.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }
}

/// PLAIN's single message: no authorization id, the user name, the password.
pub fn plain_message(username: &str, password: &Secret) -> Vec<u8> {
    let mut message = Vec::with_capacity(username.len() + password.expose().len() + 2);
    message.push(0);
    message.extend_from_slice(username.as_bytes());
    message.push(0);
    message.extend_from_slice(password.expose().as_bytes());
    message
}

/// A SCRAM exchange in progress (client side).
pub struct Scram {
    hash: Hash,
    password: Secret,
    client_nonce: String,
    client_first_bare: String,
    /// The server signature expected in the final message, once the proof is sent.
    expected_server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scram")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A user name as SCRAM writes it (`=` and `,` escaped).
fn saslname(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// A fresh client nonce: 24 random bytes in base64 (printable, no commas).
fn fresh_nonce() -> Result<String, SaslError> {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| SaslError("no random bytes for the nonce".into()))?;
    Ok(BASE64.encode(bytes))
}

impl Scram {
    /// Starts an exchange for `mechanism` (a SCRAM one) with a fresh random nonce.
    pub fn start(
        mechanism: SaslMechanism,
        username: &str,
        password: &Secret,
    ) -> Result<Self, SaslError> {
        Self::with_nonce(mechanism, username, password, fresh_nonce()?)
    }

    /// As [`Scram::start`] with a given client nonce (the RFC's examples).
    pub fn with_nonce(
        mechanism: SaslMechanism,
        username: &str,
        password: &Secret,
        client_nonce: String,
    ) -> Result<Self, SaslError> {
        let hash = match mechanism {
            SaslMechanism::ScramSha256 => Hash::Sha256,
            SaslMechanism::ScramSha512 => Hash::Sha512,
            SaslMechanism::Plain => return Err(SaslError("PLAIN is not a SCRAM mechanism".into())),
        };
        Ok(Self {
            hash,
            password: password.clone(),
            client_first_bare: format!("n={},r={client_nonce}", saslname(username)),
            client_nonce,
            expected_server_signature: None,
        })
    }

    /// The client's first message (GS2 header `n,,`: no channel binding, no authorization id).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Reads the server's first message and returns the client's final one (with the proof).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| SaslError("the server's first SCRAM message is not UTF-8".into()))?;
        let attribute = |name: char| {
            server_first
                .split(',')
                .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        };
        if let Some(error) = attribute('e') {
            return Err(SaslError(format!("the server refused: {error}")));
        }
        let nonce = attribute('r')
            .ok_or_else(|| SaslError("the server's first SCRAM message has no nonce".into()))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError(
                "the server's nonce does not extend berth's (RFC 5802 5.1)".into(),
            ));
        }
        let salt = attribute('s')
            .and_then(|salt| BASE64.decode(salt).ok())
            .ok_or_else(|| {
                SaslError("the server's first SCRAM message has no valid salt".into())
            })?;
        let iterations: u32 = attribute('i').and_then(|i| i.parse().ok()).ok_or_else(|| {
            SaslError("the server's first SCRAM message has no iteration count".into())
        })?;
        if iterations < MIN_ITERATIONS {
            return Err(SaslError(format!(
                "the server asks for {iterations} PBKDF2 iterations, fewer than {MIN_ITERATIONS}"
            )));
        }
        let hash = self.hash;
        let mut salted = vec![0u8; hash.digest().output_len()];
        pbkdf2::derive(
            hash.pbkdf2(),
            std::num::NonZeroU32::new(iterations).expect("at least MIN_ITERATIONS"),
            &salt,
            self.password.expose().as_bytes(),
            &mut salted,
        );
        let client_key = hash.mac(&salted, b"Client Key");
        let stored_key = digest::digest(hash.digest(), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hash.mac(stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hash.mac(&salted, b"Server Key");
        self.expected_server_signature = Some(hash.mac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it must prove the server knows the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| SaslError("the server's final SCRAM message is not UTF-8".into()))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(SaslError(format!("the server refused: {error}")));
        }
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or_else(|| SaslError("the server's final message came before the proof".into()))?;
        let signature = text
            .split(',')
            .find_map(|part| part.strip_prefix("v="))
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| SaslError("the server's final SCRAM message has no signature".into()))?;
        constant_time::verify_slices_are_equal(&signature, expected).map_err(|_| {
            SaslError(
                "the server's SCRAM signature is wrong: it does not know berth's password (or is not Kafka)"
                    .into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil", SCRAM-SHA-256.
    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let password = Secret::new("pencil");
        let mut scram = Scram::with_nonce(
            SaslMechanism::ScramSha256,
            "user",
            &password,
            "rOprNGfwEbeRWgbNEkqO".into(),
        )
        .unwrap();
        assert_eq!(scram.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = scram.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        scram
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the RFC's server signature");
        let forged = scram
            .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(forged.0.contains("does not know"), "{forged}");
    }

    #[test]
    fn a_server_that_does_not_extend_the_nonce_or_weakens_pbkdf2_is_refused() {
        let password = Secret::new("pencil");
        let scram =
            || Scram::with_nonce(SaslMechanism::ScramSha512, "u", &password, "abc".into()).unwrap();
        let other_nonce = scram().client_final(b"r=xyz123,s=QUJD,i=4096").unwrap_err();
        assert!(other_nonce.0.contains("nonce"), "{other_nonce}");
        let same_nonce = scram().client_final(b"r=abc,s=QUJD,i=4096").unwrap_err();
        assert!(same_nonce.0.contains("nonce"), "{same_nonce}");
        let weak = scram().client_final(b"r=abcdef,s=QUJD,i=1").unwrap_err();
        assert!(weak.0.contains("iterations"), "{weak}");
        let refused = scram().client_final(b"e=unknown-user").unwrap_err();
        assert!(refused.0.contains("unknown-user"), "{refused}");
        assert!(
            !format!("{:?}", scram()).contains("pencil"),
            "Debug shows no password"
        );
    }

    #[test]
    fn names_are_escaped_and_plain_is_three_fields() {
        let password = Secret::new("pw");
        let scram =
            Scram::with_nonce(SaslMechanism::ScramSha512, "a=b,c", &password, "n".into()).unwrap();
        assert_eq!(scram.client_first(), b"n,,n=a=3Db=2Cc,r=n");
        assert_eq!(plain_message("berth", &password), b"\0berth\0pw");
        assert_eq!(fresh_nonce().unwrap().len(), 32);
        assert_ne!(fresh_nonce().unwrap(), fresh_nonce().unwrap());
    }
}
