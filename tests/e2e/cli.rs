//! The `sse-bridge` binary's commands against a real bridge, and gRPC
//! reflection as stock tools use it.

use std::process::{Command, Stdio};

use futures::StreamExt;
use tokio::io::AsyncBufReadExt;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_sse-bridge");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run sse-bridge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn schema_lists_every_event_with_rules_and_examples() {
    let (ok, text, _) = run(&["schema"]);
    assert!(ok);
    for name in [
        "scan.progress",
        "scan.end",
        "scan.error",
        "message.delta",
        "message.end",
        "message.error",
        "tool_call.start",
        "tool_call.end",
        "finding.created",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("[uuid]") && text.contains("<= total"));
    let (ok, json, _) = run(&["schema", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let progress = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "scan.progress")
        .unwrap();
    // The printed example passes the catalogue's own rules.
    sse_bridge::schema::Schema::embedded()
        .prepare(
            &sse_bridge::schema::Schema::embedded()
                .event_from_json("scan.progress", &progress["example"].to_string())
                .unwrap(),
        )
        .unwrap();
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "serve",
        "token",
        "publish",
        "disconnect",
        "tail",
        "schema",
        "codegen",
        "bench",
    ] {
        let (ok, text, _) = run(&[cmd, "--help"]);
        assert!(ok && text.contains("Usage"), "{cmd}");
    }
    let (_, serve, _) = run(&["serve", "--help"]);
    assert!(serve.contains("SSE_BRIDGE_JWT_SECRET") && serve.contains("--max-channels"));
}

#[test]
fn serve_refuses_to_start_without_a_key() {
    let (ok, _, err) = run(&[
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("--jwt-secret"), "{err}");
}

// The CLI runs as a blocking child process: keep a worker free for the
// bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_publish_and_tail_round_trip() {
    let bridge = Bridge::start(&[]).await;
    let (ok, sub, _) = run(&["token", "--secret", SECRET, "--tenant", TENANT]);
    assert!(ok);
    let (ok, publ, _) = run(&["token", "--secret", SECRET, "--publisher"]);
    assert!(ok);
    let ch = channel("cli");

    let mut tail = tokio::process::Command::new(BIN)
        .args([
            "tail",
            "--url",
            &bridge.http,
            "--token",
            sub.trim(),
            "--channel",
            &ch,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();

    // Wait until the tail is subscribed before publishing.
    let sub_token = subscriber_token(TENANT);
    let mut probe = bridge.subscribe(&[&ch], &sub_token, None).await;
    let data = format!(r#"{{"scan_id":"{TENANT}","checked":3,"total":10}}"#);
    let publish_cli = |event: &str, data: &str| {
        run(&[
            "publish",
            "--target",
            &bridge.grpc,
            "--token",
            publ.trim(),
            "--channel",
            &ch,
            "--event",
            event,
            "--data",
            data,
        ])
    };
    let mut published = None;
    for _ in 0..50 {
        let (ok, out, err) = publish_cli("scan.progress", &data);
        assert!(ok, "{err}");
        let id = out.trim().to_owned();
        assert_eq!(probe.next_event().await.id.as_deref(), Some(id.as_str()));
        // The tail may not be subscribed yet for the first attempts.
        let got = tokio::time::timeout(std::time::Duration::from_millis(300), async {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.is_empty() {
                    break;
                }
                seen.push(line);
            }
            seen
        })
        .await;
        if let Ok(seen) = got {
            if seen.first() == Some(&format!("id: {id}")) {
                assert_eq!(seen[1], "event: scan.progress");
                assert_eq!(seen[2], format!("data: {data}"));
                published = Some(id);
                break;
            }
        }
    }
    assert!(published.is_some(), "tail printed the published frame");

    // Rejections are shown plainly, with the field path.
    let (ok, _, err) = publish_cli("scan.progress", r#"{"scan_id":"x","checked":1,"total":1}"#);
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("event.scan_progress.scan_id"),
        "{err}"
    );
    assert_eq!(
        err.matches("event.scan_progress.scan_id").count(),
        1,
        "each violation is shown once: {err}"
    );
    let (ok, _, err) = publish_cli("scan.nope", "{}");
    assert!(!ok && err.contains("unknown event"), "{err}");
    tail.kill().await.ok();
    bridge.stop().await;
}

// The CLI runs as a blocking child process: keep a worker free for the
// bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_a_channels_streams_and_explains_refusals() {
    let bridge = Bridge::start(&[]).await;
    let ch = channel("cli-revoke");
    let mut sse = bridge
        .subscribe(&[&ch], &subscriber_token(TENANT), None)
        .await;
    let (ok, admin, _) = run(&[
        "token",
        "--secret",
        SECRET,
        "--publisher",
        "--scope",
        "streams:admin",
        "--tenants",
        TENANT,
    ]);
    assert!(ok);
    let (ok, out, err) = run(&[
        "disconnect",
        "--target",
        &bridge.grpc,
        "--token",
        admin.trim(),
        "--channel",
        &ch,
        "--reason",
        "moved to archive",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "order sent to 1 node");
    let f = sse.next_event().await;
    assert_eq!(f.event.as_deref(), Some("bridge.revoked"), "{f:?}");
    assert_eq!(
        f.data_json(),
        serde_json::json!({"reason": "moved to archive"})
    );

    // A publisher token is not an admin token; the refusal says so.
    let (ok, publisher, _) = run(&["token", "--secret", SECRET, "--publisher"]);
    assert!(ok);
    let (ok, _, err) = run(&[
        "disconnect",
        "--target",
        &bridge.grpc,
        "--token",
        publisher.trim(),
        "--tenant",
        TENANT,
    ]);
    assert!(!ok);
    assert!(
        err.contains("PermissionDenied") && err.contains("streams:admin"),
        "{err}"
    );
    // Exactly one target.
    let (ok, _, err) = run(&["disconnect", "--token", admin.trim()]);
    assert!(!ok && err.contains("--tenant"), "{err}");
    let (ok, _, err) = run(&[
        "disconnect",
        "--token",
        admin.trim(),
        "--tenant",
        TENANT,
        "--channel",
        &ch,
    ]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    bridge.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_publisher() {
    let bridge = Bridge::start(&[]).await;
    let transport = tonic::transport::Endpoint::from_shared(bridge.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(transport);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"ssebridge.v1.Publisher".to_owned()),
        "{names:?}"
    );
    bridge.stop().await;
}

/// The bench command at tiny sizes, so it does not rot. Figures are not
/// checked (benchmarks are not tests); completeness is.
#[test]
fn bench_scenarios_run_at_tiny_sizes() {
    let scenarios: [&[&str]; 15] = [
        &["fanout", "--subscribers", "3", "--events", "20"],
        &["channels", "--subscribers", "3", "--events", "5"],
        &[
            "latency",
            "--subscribers",
            "3",
            "--events",
            "10",
            "--rate",
            "200",
        ],
        &["idle", "--subscribers", "5"],
        &["idle", "--subscribers", "5", "--channels-per-stream", "own"],
        &["idle", "--subscribers", "5", "--channels-per-stream", "one"],
        &[
            "idle-floor",
            "--subscribers",
            "5",
            "--channels-per-stream",
            "own",
        ],
        &[
            "idle-floor",
            "--subscribers",
            "5",
            "--channels-per-stream",
            "one",
            "--floor-shape",
            "held",
        ],
        &["publish", "--events", "40", "--callers", "2"],
        &["resume", "--events", "30"],
        &[
            "floor",
            "--subscribers",
            "3",
            "--events",
            "10",
            "--rate",
            "200",
        ],
        &["bus", "--subscribers", "3", "--events", "5"],
        &["connect", "--subscribers", "20"],
        &[
            "connect",
            "--subscribers",
            "20",
            "--resume",
            "--shared-token",
        ],
        &[
            "connect",
            "--subscribers",
            "5",
            "--alg",
            "rs256",
            "--rsa-key",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/rsa_private.pem"
            ),
        ],
    ];
    for args in scenarios {
        let mut full = vec!["bench", "--spawn"];
        full.extend_from_slice(args);
        let (ok, out, err) = run(&full);
        assert!(ok, "{args:?}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
        match args[0] {
            "fanout" | "channels" | "latency" | "floor" => {
                assert_eq!(report["lost"], 0, "{report}");
                assert!(report["deliveries"].as_u64().unwrap() > 0);
            }
            "idle" | "idle-floor" => {
                assert!(report["server_bytes_per_stream"].is_u64(), "{report}");
                if args[0] == "idle-floor" {
                    let held = args.contains(&"held");
                    assert_eq!(report["floor_shape"], if held { "held" } else { "task" });
                }
                let spread = args
                    .iter()
                    .position(|a| *a == "--channels-per-stream")
                    .map(|i| args[i + 1]);
                let channels = match spread {
                    Some("own") => 5,
                    Some("one") => 1,
                    _ => 5, // 100 channels, 5 streams: each its own
                };
                assert_eq!(report["channels"], channels, "{report}");
            }
            "publish" => assert!(report["unary_per_sec"].as_f64().unwrap() > 0.0),
            "resume" => assert_eq!(report["caught_up"], true),
            "bus" => {
                assert_eq!(report["lost"], 0, "{report}");
                assert_eq!(report["delivered"], 15, "{report}");
            }
            "connect" => {
                assert!(
                    report["streams_per_sec"].as_f64().unwrap() > 0.0,
                    "{report}"
                );
                let rs256 = args.contains(&"rs256");
                assert_eq!(report["alg"], if rs256 { "rs256" } else { "hs256" });
                assert_eq!(report["resume"], args.contains(&"--resume"), "{report}");
            }
            _ => unreachable!(),
        }
    }
}

/// The bus baseline on a real Valkey: every event published and delivered
/// back to the node, and Valkey's script time read from its stats.
#[test]
fn bench_bus_runs_on_valkey() {
    let valkey = crate::valkey_server::ValkeyServer::start(false);
    let url = valkey.url();
    let args = [
        "bench",
        "bus",
        "--subscribers",
        "4",
        "--events",
        "30",
        "--valkey-url",
        &url,
    ];
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["bus"], "valkey", "{report}");
    assert_eq!(report["published"], 120, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(
        report["valkey_script_usec_per_event"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// The reconnect storm on a real Valkey, tiny: every client resumes across
/// the restart and reads exactly what it missed, and the storm's Valkey
/// commands are counted by name.
#[test]
fn bench_reconnect_storm_runs_on_valkey() {
    let valkey = crate::valkey_server::ValkeyServer::start(false);
    let url = valkey.url();
    let args = [
        "bench",
        "reconnect-storm",
        "--spawn",
        "--subscribers",
        "20",
        "--behind",
        "3",
        "--within-ms",
        "100",
        "--valkey-url",
        &url,
    ];
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["delivered"], 60, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["server_rss_kib_peak"].is_u64(), "{report}");
    assert!(
        report["valkey_commands_sent_per_client"].is_f64(),
        "{report}"
    );
    // Without Valkey there is nothing that outlives the restart: refused,
    // saying what is needed.
    let (ok, _, err) = run(&["bench", "reconnect-storm", "--spawn", "--subscribers", "2"]);
    assert!(!ok);
    assert!(err.contains("needs --spawn and --valkey-url"), "{err}");
}

/// A spawned bridge that cannot start (no Valkey there) is named as the
/// cause, not the streams it reset on its way out.
#[test]
fn bench_names_a_spawned_bridge_that_exited() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let args = [
        "bench",
        "channels",
        "--spawn",
        "--subscribers",
        "10",
        "--events",
        "1",
        "--valkey-url",
        &url,
    ];
    let (ok, _, err) = run(&args);
    assert!(!ok);
    assert!(err.contains("cannot connect to Valkey"), "{err}");
    assert!(err.contains("the spawned bridge exited"), "{err}");
}

/// TLS to Valkey without certificate verification is refused at start,
/// with what to change, rather than honoured on one connection and not the
/// other.
#[test]
fn serve_refuses_an_insecure_rediss_url() {
    let (ok, _, err) = run(&[
        "serve",
        "--jwt-secret",
        "insecure-url-test",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--valkey-url",
        "rediss://127.0.0.1:1/#insecure",
    ]);
    assert!(!ok);
    assert!(err.contains("bad Valkey URL"), "{err}");
    assert!(err.contains("#insecure"), "{err}");
}

/// A bad flag is reported at once, before a JWKS is fetched from the
/// network (the URL here answers nothing).
#[test]
fn flag_checks_come_before_loading_keys() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let (ok, _, err) = run(&[
        "serve",
        "--jwt-jwks",
        &url,
        "--idle-timeout-secs",
        "0",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(err.contains("--idle-timeout-secs"), "{err}");
}

/// `serve --dev` with `extra` flags on free loopback ports, and its HTTP
/// address.
fn dev_server(extra: &[&str]) -> (tokio::process::Command, std::net::SocketAddr) {
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    drop((http, grpc));
    let mut command = tokio::process::Command::new(BIN);
    command.args(["serve", "--dev"]).args(extra).args([
        "--http-addr",
        &http_addr.to_string(),
        "--grpc-addr",
        &grpc_addr.to_string(),
    ]);
    (command, http_addr)
}

/// `--dev` keeps a key the developer gave, a JWKS included (it used to add
/// a random secret and then refuse two keys).
#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_takes_a_jwks() {
    let path = std::env::temp_dir().join(format!("dev-jwks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        serde_json::json!({"keys": [crate::subscriber_auth::ed_jwk("a")]}).to_string(),
    )
    .unwrap();
    let (mut dev, http_addr) = dev_server(&["--jwt-jwks", &path.display().to_string()]);
    let mut child = dev
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve --dev --jwt-jwks exited: {status}");
        }
        if let Ok(r) = http_client()
            .get(format!("http://{http_addr}/healthz"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&path);
}

/// The commands `serve --dev` prints run as printed: here the binary is not
/// on `PATH` and not under `cargo run`, so they name its path. The banner
/// has an admin token, and its `disconnect` command works too.
#[tokio::test(flavor = "multi_thread")]
async fn dev_banner_commands_run_as_printed() {
    let (mut dev, _) = dev_server(&[]);
    let mut child = dev
        .env_remove("CARGO_MANIFEST_DIR")
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    while !banner.iter().any(|l: &String| l.contains(" disconnect ")) {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the banner")
            .unwrap()
            .expect("a line");
        banner.push(line);
    }
    assert!(
        banner.iter().any(|l| l.starts_with("Admin token")),
        "{banner:#?}"
    );
    let command = |word: &str| {
        banner
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{BIN} {word} ")))
            .unwrap_or_else(|| panic!("no `{BIN} {word}` command in {banner:#?}"))
            .trim()
            .to_owned()
    };
    for word in ["publish", "disconnect"] {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command(word))
            .env("PATH", "/usr/bin:/bin")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{word}: {out:?}");
    }
    assert!(command("tail").contains("--channel scans:"));
    let _ = child.kill().await;
}

/// Mistakes with addresses say what is wanted: a URL without a scheme, the
/// HTTP port given to `publish`, the gRPC port given to `tail`.
#[tokio::test(flavor = "multi_thread")]
async fn address_mistakes_say_which_port_is_which() {
    let bridge = Bridge::start(&[]).await;
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(BIN)
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let channel = channel("ports");
    let publish = |target: &str| {
        [
            "publish",
            "--target",
            target,
            "--token",
            &publisher_token(&["*"]),
            "--channel",
            &channel,
            "--event",
            "scan.progress",
            "--data",
            &format!(r#"{{"scan_id":"{TENANT}","checked":1,"total":2}}"#),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let tail = |url: &str| {
        [
            "tail",
            "--url",
            url,
            "--token",
            &subscriber_token(TENANT),
            "--channel",
            &channel,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let no_scheme = bridge.grpc.trim_start_matches("http://");
    let err = run(publish(no_scheme)).await;
    assert!(err.contains("expected the gRPC listener's URL"), "{err}");
    assert_eq!(
        err.matches("scheme").count(),
        0,
        "said once, plainly: {err}"
    );
    let err = run(publish(&bridge.http)).await;
    assert!(err.contains("is --target the HTTP (SSE) port?"), "{err}");
    let err = run(tail(bridge.http.trim_start_matches("http://"))).await;
    assert!(err.contains("expected the HTTP listener's URL"), "{err}");
    let err = run(tail(&bridge.grpc)).await;
    assert!(err.contains("is --url the gRPC port?"), "{err}");
    bridge.stop().await;
}
