//! Running as a fleet: `/readyz` that says which part is down, a drain that
//! moves every stream to another node without a gap, the configuration
//! file, and the binary run the way the container image runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::balancer::Balancer;
use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_sse-bridge");

async fn readyz(http: &str) -> (u16, Value) {
    let r = http_client()
        .get(format!("{http}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a body");
    (status, serde_json::from_str(&text).expect("a JSON body"))
}

#[tokio::test]
async fn readyz_says_which_part_is_down() {
    let backend = Backend::valkey();
    let bridge = Bridge::on(&backend, &["--valkey-timeout-ms", "300"]).await;
    assert_eq!(
        readyz(&bridge.http).await,
        (
            200,
            json!({"ready": true, "bus": "ok", "subscriptions": "ok", "draining": false})
        )
    );
    backend.server().kill();
    let (status, body) = readyz(&bridge.http).await;
    assert_eq!(status, 503);
    assert_eq!(
        (&body["ready"], &body["bus"], &body["draining"]),
        (&json!(false), &json!("down"), &json!(false)),
        "{body}"
    );
    bridge.stop().await;
}

/// A client as a browser's EventSource behaves: on a stream's end it waits
/// the last `retry:` and reconnects with its last id. Returns the events'
/// numbers in arrival order and the reconnect hints it was given at each
/// end.
async fn follow(url: String, want: usize) -> (Vec<u32>, Vec<u64>) {
    let token = subscriber_token(TENANT);
    let mut got = Vec::new();
    let mut hints = Vec::new();
    let mut last: Option<String> = None;
    let mut retry = 0u64;
    while got.len() < want {
        let mut req = http_client()
            .get(&url)
            .header("authorization", format!("Bearer {token}"));
        if let Some(id) = &last {
            req = req.header("last-event-id", id.as_str());
        }
        let Ok(response) = req.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut sse = Sse::new(response);
        let mut opening = true;
        while let Some(f) = sse.next_frame().await {
            if let Some(r) = &f.retry {
                retry = r.parse().expect("a number");
                if !opening {
                    hints.push(retry);
                }
            }
            opening = false;
            if f.event.as_deref() == Some("scan.progress") {
                got.push(f.data_json()["checked"].as_u64().expect("a number") as u32);
                last = f.id.clone();
                if got.len() == want {
                    return (got, hints);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(retry)).await;
    }
    (got, hints)
}

fn addr(http: &str) -> SocketAddr {
    http.trim_start_matches("http://")
        .parse()
        .expect("an address")
}

/// Two nodes behind a balancer that routes by `/readyz`. Draining the one
/// that holds every stream: it turns not ready at once and keeps serving
/// for the drain delay; then each stream ends with its own `retry:` hint
/// drawn from the jitter window, and each client reconnects through the
/// balancer to the other node with its last id: every event once, in
/// order, no gap.
#[tokio::test]
async fn a_drained_node_hands_every_stream_to_the_other_without_a_gap() {
    let backend = Backend::valkey();
    let a = Bridge::on(
        &backend,
        &["--drain-delay-secs", "1", "--drain-jitter-ms", "1500"],
    )
    .await;
    let b = Bridge::on(&backend, &[]).await;
    let balancer = Balancer::start(vec![addr(&a.http), addr(&b.http)]).await;
    let url = format!(
        "http://{}/v1/events?channel={}",
        balancer.addr,
        channel("drain")
    );
    const CLIENTS: usize = 12;
    const EVENTS: u32 = 30;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(follow(url.clone(), EVENTS as usize)))
        .collect();
    // All on A; publish through B's gRPC, a steady trickle.
    let mut p = b.publisher().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..10 {
        publish(&mut p, "drain", progress(n, 1000)).await;
    }
    let mut a = a;
    let running = a.running.take().expect("running");
    let a_http = a.http.clone();
    let drained = tokio::spawn(running.drain());
    let (status, body) = readyz(&a_http).await;
    assert_eq!((status, &body["draining"]), (503, &json!(true)), "{body}");
    // Still serving during the delay: these reach the clients on A.
    for n in 10..EVENTS {
        publish(&mut p, "drain", progress(n, 1000)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut hints = Vec::new();
    for c in clients {
        let (got, h) = tokio::time::timeout(PATIENCE, c)
            .await
            .expect("every client caught up")
            .expect("the client ran");
        assert_eq!(
            got,
            (0..EVENTS).collect::<Vec<_>>(),
            "every event once, in order"
        );
        hints.extend(h);
    }
    drained.await.expect("the drain finished");
    assert_eq!(
        hints.len(),
        CLIENTS,
        "each stream ended once, with a hint: {hints:?}"
    );
    assert!(hints.iter().all(|&h| h <= 1500), "{hints:?}");
    let (min, max) = (hints.iter().min().unwrap(), hints.iter().max().unwrap());
    assert!(
        max - min >= 300,
        "reconnects spread over the window: {hints:?}"
    );
    b.stop().await;
}

/// The configuration file: flags and environment win over it; the
/// secrets come from files; `config check` shows each value's source with
/// the secrets redacted.
#[test]
fn config_check_shows_sources_and_redacts_secrets() {
    let dir = tempdir();
    std::fs::write(dir.join("secret"), "file-secret-1234\n").unwrap();
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "http_addr = \"127.0.0.1:0\"\nhistory_len = 5\nretry_ms = 900\n\
             jwt_secret_file = \"{}\"\n[valkey]\ntimeout_ms = 700\n",
            dir.join("secret").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&config)
        .env("SSE_BRIDGE_RETRY_MS", "1200")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once(" = ")).collect();
    assert_eq!(lines["history_len"], "5  # file");
    assert_eq!(
        lines["retry_ms"], "1200  # environment",
        "the environment wins"
    );
    assert_eq!(lines["valkey_timeout_ms"], "700  # file", "tables flatten");
    assert_eq!(lines["keepalive_secs"], "15  # default");
    assert!(!text.contains("file-secret-1234"), "{text}");
}

#[test]
fn a_mistyped_key_or_value_stops_start_up_naming_it() {
    let dir = tempdir();
    for (file, want) in [
        (
            "histroy_len = 5\n",
            "unknown key `histroy_len`; did you mean `history_len`?",
        ),
        (
            "[valkey]\ntimeout = 5\n",
            "unknown key `valkey_timeout`; did you mean `valkey_timeout_ms`?",
        ),
        (
            "history_len = \"many\"\n",
            "key `history_len`: invalid value 'many'",
        ),
        ("dev = 1\n", "key `dev`: expected true or false"),
        ("history_len = [", "not valid TOML"),
    ] {
        let config = dir.join("bad.toml");
        std::fs::write(&config, file).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["serve", "--jwt-secret", "x", "--config"])
            .arg(&config)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}");
        assert!(err.contains(want), "{file}: {err}");
        assert!(err.contains("bad.toml"), "names the file: {err}");
    }
    // The flag wins over the file: a bad value in the file for a key the
    // command line sets is never read.
    let config = dir.join("flag-wins.toml");
    std::fs::write(&config, "history_len = \"many\"\n").unwrap();
    config_check(
        &config,
        &[
            ("SSE_BRIDGE_JWT_SECRET", "x"),
            ("SSE_BRIDGE_HISTORY_LEN", "9"),
        ],
    );
}

/// Runs `config check` on `config` with `env`; expects it to pass.
fn config_check(config: &std::path::Path, env: &[(&str, &str)]) {
    let out = std::process::Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `config default` is a complete file: every key, all commented out, and
/// valid TOML once uncommented. The Kubernetes ConfigMap's file checks.
#[test]
fn the_default_file_and_the_shipped_config_map_are_valid() {
    let out = std::process::Command::new(BIN)
        .args(["config", "default"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "all commented"
    );
    for key in [
        "http_addr",
        "valkey_url",
        "jwt_secret_file",
        "drain_delay_secs",
    ] {
        assert!(text.contains(&format!("\n# {key} = ")), "{key}");
    }
    // The ConfigMap's config.toml (its secrets' files made up here).
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml"),
    )
    .expect("the ConfigMap");
    let body: String = manifest
        .split_once("config.toml: |\n")
        .expect("a config.toml key")
        .1
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempdir();
    std::fs::write(dir.join("s"), "k8s-secret").unwrap();
    let s = dir.join("s").display().to_string();
    let body = body
        .replace("/etc/sse-bridge/secret/jwt_secret", &s)
        .replace("/etc/sse-bridge/secret/publisher_jwt_secret", &s);
    std::fs::write(dir.join("k8s.toml"), body).unwrap();
    config_check(&dir.join("k8s.toml"), &[]);
}

/// A scratch directory, removed with what it holds when dropped.
struct Scratch(std::path::PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Scratch {
    let dir = std::env::temp_dir().join(format!("sse-bridge-deploy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    Scratch(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn health(args: &[&str]) -> bool {
    std::process::Command::new(BIN)
        .arg("health")
        .args(args)
        .status()
        .expect("runs")
        .success()
}

/// The binary as the container image runs it: as a non-root user (uid
/// 65532, when the tests run as root), from `/`, configured only by the
/// environment and a config file, its secret in a file; `health` as its
/// HEALTHCHECK; SIGTERM drains it (`health --ready` fails at once, then it
/// exits 0).
#[test]
fn the_binary_runs_as_the_image_runs_it() {
    let dir = tempdir();
    let secret = dir.join("jwt_secret");
    std::fs::write(&secret, "image-secret").unwrap();
    let http = free_port();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "jwt_secret_file = \"{}\"\ndrain_delay_secs = 2\n",
            secret.display()
        ),
    )
    .unwrap();
    // Installed as the image installs it: a checkout's build directory may
    // be closed to other users (a clone under a 0700 temp dir is).
    let installed = dir.join("sse-bridge");
    std::fs::copy(BIN, &installed).expect("copy the binary");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = std::process::Command::new(&installed);
    command
        .arg("serve")
        .current_dir("/")
        .env_clear()
        .env("SSE_BRIDGE_CONFIG", &config)
        .env("SSE_BRIDGE_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("SSE_BRIDGE_GRPC_ADDR", "127.0.0.1:0")
        .env("SSE_BRIDGE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        use std::os::unix::process::CommandExt;
        command.uid(65532).gid(65532);
    }
    let mut child = command.spawn().expect("the bridge starts");
    let base = format!("http://127.0.0.1:{http}");
    let deadline = std::time::Instant::now() + PATIENCE;
    while !health(&["--url", &base]) {
        assert!(std::time::Instant::now() < deadline, "never healthy");
        assert!(child.try_wait().unwrap().is_none(), "the bridge exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(health(&["--url", &base, "--ready"]));
    assert!(
        !health(&["--url", "http://127.0.0.1:1"]),
        "nothing there: exit 1"
    );
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!health(&["--url", &base, "--ready"]), "draining: not ready");
    assert!(health(&["--url", &base]), "still alive while it drains");
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "never exited");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}
