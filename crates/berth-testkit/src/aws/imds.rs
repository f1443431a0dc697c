//! A small IMDSv2 endpoint per simulated host, mutable from tests.
//!
//! moto's metadata endpoint is static (`i-fake`, no network interfaces), and berth must never use IMDSv1. This
//! endpoint speaks only the v2 token flow (`PUT /latest/api/token` with a TTL header, then GETs carrying
//! `X-aws-ec2-metadata-token`), answers any GET without a valid token with 401 and counts it, so a test can
//! assert that v1 was never tried. Paths are a flat map under `/latest/meta-data/`; a directory GET lists its
//! children as IMDS does (`macs/` lists `0a:..:01/`). The instance's user data is served at `/latest/user-data`
//! (404 when it has none, as EC2 answers), and an instance role's credentials under `iam/security-credentials/`
//! as EC2 serves an instance profile's (what the SDK's default chain reads when no other credentials are set).
//! Bind it on any address (a host's namespace address in the simulated fleet; 127.0.0.1 in adapter tests).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::http::{Handler, Request, Response, Server};

const META: &str = "/latest/meta-data/";
const USER_DATA: &str = "/latest/user-data";

/// An instance role's temporary credentials, as IMDS serves them to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCredentials {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: String,
    /// `Token` (the session token).
    pub token: String,
}

/// One network interface as IMDS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsInterface {
    /// MAC, lower case.
    pub mac: String,
    /// `device-number`.
    pub device_number: u32,
    /// `interface-id` (`eni-...`).
    pub interface_id: String,
}

/// What a simulated host's IMDS serves at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsHost {
    /// `instance-id`.
    pub instance_id: String,
    /// `placement/region`.
    pub region: String,
    /// `placement/availability-zone`.
    pub availability_zone: String,
    /// `local-hostname`.
    pub hostname: String,
    /// Interfaces; the one with device number 0 is the primary (`mac`).
    pub interfaces: Vec<ImdsInterface>,
    /// `tags/instance/<key>` (instance metadata tags); empty serves no `tags/` tree.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    values: BTreeMap<String, String>,
    user_data: Option<String>,
    user_data_reads: usize,
    tokens: BTreeSet<String>,
    issued: u64,
    token_requests: usize,
    v1_refusals: usize,
    gets: Vec<String>,
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct Imds {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl Imds {
    /// Serves `host` on `bind` (port 0 for a free one).
    pub fn start(bind: SocketAddr, host: &ImdsHost) -> std::io::Result<Self> {
        Self::from_listener(std::net::TcpListener::bind(bind)?, host)
    }

    /// Serves `host` on a listener bound elsewhere (e.g. `169.254.169.254:80` inside a host's namespace).
    pub fn from_listener(
        listener: std::net::TcpListener,
        host: &ImdsHost,
    ) -> std::io::Result<Self> {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request: Request| {
            let response = handle(&shared, &request);
            Box::pin(async move { response })
        });
        let imds = Self {
            server: Server::from_listener(listener, handler)?,
            state,
        };
        imds.set("instance-id", &host.instance_id);
        imds.set("placement/region", &host.region);
        imds.set("placement/availability-zone", &host.availability_zone);
        imds.set("local-hostname", &host.hostname);
        for interface in &host.interfaces {
            imds.add_interface(interface);
        }
        for (key, value) in &host.tags {
            imds.set(&format!("tags/instance/{key}"), value);
        }
        Ok(imds)
    }

    /// `http://<address>`, to use as `aws.imds_endpoint`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    /// Sets a value under `/latest/meta-data/`, e.g. `autoscaling/target-lifecycle-state`.
    pub fn set(&self, path: &str, value: &str) {
        self.lock()
            .values
            .insert(path.trim_matches('/').to_owned(), value.to_owned());
    }

    /// Removes a value (its GET then answers 404).
    pub fn remove(&self, path: &str) {
        self.lock().values.remove(path.trim_matches('/'));
    }

    /// Adds an interface (as when EC2 hot-plugs an ENI); the primary (device 0) also sets `mac`.
    pub fn add_interface(&self, interface: &ImdsInterface) {
        let base = format!("network/interfaces/macs/{}", interface.mac);
        self.set(
            &format!("{base}/device-number"),
            &interface.device_number.to_string(),
        );
        self.set(&format!("{base}/interface-id"), &interface.interface_id);
        self.set(&format!("{base}/mac"), &interface.mac);
        if interface.device_number == 0 {
            self.set("mac", &interface.mac);
        }
    }

    /// Removes an interface (after a detach).
    pub fn remove_interface(&self, mac: &str) {
        let prefix = format!("network/interfaces/macs/{mac}/");
        self.lock()
            .values
            .retain(|key, _| !key.starts_with(&prefix));
    }

    /// Sets `autoscaling/target-lifecycle-state` (`InService`, `Terminated`, ...).
    pub fn set_lifecycle_state(&self, state: &str) {
        self.set("autoscaling/target-lifecycle-state", state);
    }

    /// Sets `spot/instance-action` to a notice such as `{"action": "terminate", "time": "..."}`.
    pub fn set_spot_action(&self, notice: &str) {
        self.set("spot/instance-action", notice);
    }

    /// Sets the instance's user data (`/latest/user-data`, as launched: the launch template's `UserData`
    /// decoded); None serves 404, as for an instance launched without any.
    pub fn set_user_data(&self, user_data: Option<&str>) {
        self.lock().user_data = user_data.map(str::to_owned);
    }

    /// How many times the user data was read with a valid token (404s included).
    pub fn user_data_reads(&self) -> usize {
        self.lock().user_data_reads
    }

    /// Serves `role`'s credentials as EC2 serves an instance profile's: `iam/security-credentials/` lists the
    /// role, `iam/security-credentials/<role>` holds the JSON document. A simulated role's credentials never
    /// rotate: they expire far in the future.
    pub fn set_instance_role(&self, role: &str, credentials: &RoleCredentials) {
        let document = serde_json::json!({
            "Code": "Success",
            "LastUpdated": "2026-01-01T00:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "Token": credentials.token,
            "Expiration": "2099-01-01T00:00:00Z",
        });
        self.set(
            &format!("iam/security-credentials/{role}"),
            &document.to_string(),
        );
    }

    /// How many GETs arrived without a valid token (IMDSv1 attempts, all refused with 401).
    pub fn v1_refusals(&self) -> usize {
        self.lock().v1_refusals
    }

    /// How many tokens were requested.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Paths read with a valid token, in order.
    pub fn reads(&self) -> Vec<String> {
        self.lock().gets.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("imds lock")
    }
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    let mut state = state.lock().expect("imds lock");
    let path = request.path();
    if request.header("x-forwarded-for").is_some() {
        return Response::text(403, "Forbidden");
    }
    if path == "/latest/api/token" {
        if request.method != "PUT" {
            return Response::text(405, "Method Not Allowed");
        }
        state.token_requests += 1;
        let ttl_ok = request
            .header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|ttl| ttl.trim().parse::<u32>().ok())
            .is_some_and(|ttl| (1..=21_600).contains(&ttl));
        if !ttl_ok {
            return Response::text(400, "Bad Request");
        }
        state.issued += 1;
        let token = format!("berth-test-token-{}-{}", state.issued, std::process::id());
        state.tokens.insert(token.clone());
        let mut response = Response::text(200, token);
        response.headers.push((
            "x-aws-ec2-metadata-token-ttl-seconds".into(),
            "21600".into(),
        ));
        return response;
    }
    if request.method != "GET" {
        return Response::text(405, "Method Not Allowed");
    }
    let token_ok = request
        .header("x-aws-ec2-metadata-token")
        .is_some_and(|token| state.tokens.contains(token));
    if !token_ok {
        state.v1_refusals += 1;
        return Response::text(401, "Unauthorized");
    }
    if path == USER_DATA {
        state.user_data_reads += 1;
        return match &state.user_data {
            Some(user_data) => Response::text(200, user_data.clone()),
            None => Response::text(404, "Not Found"),
        };
    }
    let Some(key) = path
        .strip_prefix(META)
        .or_else(|| (path == "/latest/meta-data").then_some(""))
    else {
        return Response::text(404, "Not Found");
    };
    state.gets.push(key.to_owned());
    let key = key.trim_end_matches('/');
    if let Some(value) = state.values.get(key) {
        return Response::text(200, value.clone());
    }
    let prefix = if key.is_empty() {
        String::new()
    } else {
        format!("{key}/")
    };
    let children: BTreeSet<String> = state
        .values
        .keys()
        .filter_map(|full| full.strip_prefix(&prefix))
        .map(|rest| match rest.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => rest.to_owned(),
        })
        .collect();
    if children.is_empty() {
        Response::text(404, "Not Found")
    } else {
        Response::text(200, children.into_iter().collect::<Vec<_>>().join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::http::{forward, Request};

    fn host() -> ImdsHost {
        ImdsHost {
            instance_id: "i-0123".into(),
            region: "eu-west-1".into(),
            availability_zone: "eu-west-1a".into(),
            hostname: "broker-host-0".into(),
            interfaces: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    async fn call(imds: &Imds, method: &str, path: &str, header: Option<(&str, &str)>) -> Response {
        let request = Request {
            method: method.into(),
            target: path.into(),
            headers: header
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .into_iter()
                .collect(),
            body: Vec::new(),
        };
        forward(imds.address(), &request)
            .await
            .expect("IMDS answers")
    }

    /// An IMDSv2 session token.
    async fn token(imds: &Imds) -> String {
        let token = call(
            imds,
            "PUT",
            "/latest/api/token",
            Some(("x-aws-ec2-metadata-token-ttl-seconds", "60")),
        )
        .await;
        String::from_utf8(token.body).expect("token")
    }

    #[tokio::test]
    async fn user_data_needs_a_token_and_is_not_found_until_the_instance_has_some() {
        let imds = Imds::start(([127, 0, 0, 1], 0).into(), &host()).expect("IMDS");
        let token = token(&imds).await;
        let with_token = Some(("x-aws-ec2-metadata-token", token.as_str()));
        assert_eq!(call(&imds, "GET", USER_DATA, None).await.status, 401);
        assert_eq!(call(&imds, "GET", USER_DATA, with_token).await.status, 404);
        imds.set_user_data(Some("#!/bin/sh\ntrue\n"));
        let served = call(&imds, "GET", USER_DATA, with_token).await;
        assert_eq!(
            (served.status, served.body.as_slice()),
            (200, b"#!/bin/sh\ntrue\n".as_slice())
        );
        assert_eq!((imds.user_data_reads(), imds.v1_refusals()), (2, 1));
        imds.set_user_data(None);
        assert_eq!(call(&imds, "GET", USER_DATA, with_token).await.status, 404);
    }

    #[tokio::test]
    async fn an_instance_role_is_listed_and_its_credentials_served() {
        let imds = Imds::start(([127, 0, 0, 1], 0).into(), &host()).expect("IMDS");
        imds.set_instance_role(
            "berth-broker",
            &RoleCredentials {
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                token: "session".into(),
            },
        );
        let token = token(&imds).await;
        let get = |path: &'static str| {
            let token = token.clone();
            let imds = &imds;
            async move {
                let answer = call(
                    imds,
                    "GET",
                    path,
                    Some(("x-aws-ec2-metadata-token", &token)),
                )
                .await;
                String::from_utf8(answer.body).expect("utf-8")
            }
        };
        assert_eq!(
            get("/latest/meta-data/iam/security-credentials/").await,
            "berth-broker"
        );
        let document: serde_json::Value = serde_json::from_str(
            &get("/latest/meta-data/iam/security-credentials/berth-broker").await,
        )
        .expect("JSON");
        assert_eq!(document["Code"], "Success");
        assert_eq!(
            (
                &document["AccessKeyId"],
                &document["SecretAccessKey"],
                &document["Token"]
            ),
            (&"AKID".into(), &"secret".into(), &"session".into())
        );
    }
}
