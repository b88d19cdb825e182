//! Starting and stopping the real `chiso` binary on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `chiso serve`.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The port of its PostgreSQL protocol (each server its own, so tests run side by side).
    pub pg_port: u16,
    /// The port of its Flight SQL service.
    pub flight_port: u16,
    /// What it writes to stderr (warnings and errors), shown when it does not start.
    stderr: tempfile::NamedTempFile,
}

impl Server {
    /// Starts `chiso serve` on `data_dir` and waits until `/health` answers.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables.
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(data_dir, env, &[], Duration::from_secs(30)).await
    }

    /// Like [`Server::start`], with extra arguments to `chiso serve`; waits up to 30 minutes
    /// (`--demo` loads its history before it listens).
    pub async fn start_with_args(data_dir: &Path, args: &[&str]) -> Self {
        Self::launch(data_dir, &[], args, Duration::from_secs(1800)).await
    }

    /// Like [`Server::start`], with extra environment variables and arguments.
    pub async fn start_with_options(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::launch(data_dir, env, args, Duration::from_secs(30)).await
    }

    /// Starts the server on free ports. A port found free can be taken before the server binds
    /// it (by another test's server, or as a client connection's local port): a server that
    /// exits because its address is in use is started again on other ports.
    async fn launch(data_dir: &Path, env: &[(&str, &str)], args: &[&str], wait: Duration) -> Self {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let mut server = Self::spawn(data_dir, env, args);
            match server.wait_healthy(wait).await {
                Ok(()) => return server,
                Err(failure) if failure.address_in_use && attempt < ATTEMPTS => continue,
                Err(failure) => panic!(
                    "chiso did not become healthy at {}: {}; its stderr ended with:\n{}",
                    server.url, failure.state, failure.stderr
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let port = free_port();
        let pg_port = free_port();
        let pg_listen = format!("127.0.0.1:{pg_port}");
        let pg_args = match args.contains(&"--pg-listen") {
            true => vec![],
            false => vec!["--pg-listen", pg_listen.as_str()],
        };
        let flight_port = free_port();
        let flight_listen = format!("127.0.0.1:{flight_port}");
        let flight_args = match args.contains(&"--flight-listen") {
            true => vec![],
            false => vec!["--flight-listen", flight_listen.as_str()],
        };
        let stderr = tempfile::NamedTempFile::new().expect("a file for the server's stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_chiso"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .args(pg_args)
            .args(flight_args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("CHISO_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("the stderr file reopens"))
            .spawn()
            .expect("chiso starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            pg_port,
            flight_port,
            stderr,
        }
    }

    /// Waits until `/health` answers, or says whether the server exited (and how) or was still
    /// starting after `wait`, with the end of what it wrote to stderr.
    async fn wait_healthy(&mut self, wait: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + wait;
        let client = reqwest::Client::new();
        let state = loop {
            let health = client.get(format!("{}/health", self.url)).send().await;
            // Only while it runs: a server that lost its port to another exits.
            let exited = self.child.try_wait().expect("the server's status");
            match exited {
                None if health.is_ok_and(|r| r.status().is_success()) => return Ok(()),
                Some(status) => break format!("exited ({status})"),
                None if Instant::now() >= deadline => {
                    break format!("still starting after {wait:?}")
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let printed = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let tail: Vec<&str> = printed.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(StartFailure {
            address_in_use: printed.contains("Address already in use"),
            state,
            stderr: tail.join("\n"),
        })
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("reaped")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a server did not become healthy.
struct StartFailure {
    /// Whether it exited because a port it was given had been taken.
    address_in_use: bool,
    /// How it ended: exited (with its status), or still starting.
    state: String,
    /// The end of its stderr.
    stderr: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The JSON answer of a `GET`.
pub async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.expect("read");
    response.json().await.expect("json")
}

/// Every event in the log, paging through `GET /v1/events`.
pub async fn read_everything(url: &str) -> Vec<serde_json::Value> {
    read_everything_as(url, None).await
}

/// Every event in the log, asked with `token`.
pub async fn read_everything_as(url: &str, token: Option<&str>) -> Vec<serde_json::Value> {
    let http = reqwest::Client::new();
    let mut events = Vec::new();
    loop {
        let mut request = http.get(format!("{url}/v1/events?from={}&limit=10000", events.len()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let page: serde_json::Value = request
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("json");
        let page = page["events"].as_array().expect("events").clone();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// The agency and service every test dossier refers to (fixed ids: registering twice is an
/// idempotent retry).
pub async fn register_reference_data(url: &str) {
    let http = reqwest::Client::new();
    let agency = serde_json::json!({"events": [{
        "id": "00000000-0000-4000-8000-000000000026", "type": "AgencyRegistered",
        "data": {"code": "26", "name": "Tỉnh Vĩnh Phúc", "kind": "province", "parent": null, "province": "26"}}]});
    let service = serde_json::json!({"events": [{
        "id": "00000000-0000-4000-8000-000000000027", "type": "ServiceLaunched",
        "data": {"code": "1.001", "agency": "26", "name": "Cấp giấy phép", "field": "Xây dựng",
                 "level": 3, "at": "2019-01-02T08:00:00+07:00"}}]});
    for (stream, body) in [("agency-26", agency), ("service-1.001", service)] {
        let response = http
            .post(format!("{url}/v1/streams/{stream}"))
            .json(&body)
            .send()
            .await
            .expect("reference data");
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
}

/// A `DossierReceived` event for the reference agency and service.
pub fn dossier_received(id: uuid::Uuid) -> serde_json::Value {
    serde_json::json!({"id": id, "type": "DossierReceived", "data": {
        "agency": "26", "service": "1.001", "channel": "online",
        "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}})
}

/// Copies a directory tree (a fixture's data directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A new token with `scopes`, made by `admin`: the answer of `POST /v1/tokens` (`token`, `id`).
pub async fn create_token(url: &str, admin: &str, scopes: &[&str]) -> serde_json::Value {
    create_token_with(url, admin, serde_json::json!({ "scopes": scopes })).await
}

/// The answer of `POST /v1/tokens` with `request` (scopes, limits, …), made by `admin`.
pub async fn create_token_with(
    url: &str,
    admin: &str,
    request: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(admin)
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
