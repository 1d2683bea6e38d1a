//! A node's life: shutdown with open streams and publishes in flight, and
//! what its logs may contain.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sse_bridge::client;
use tokio::io::AsyncReadExt;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_sse-bridge");

#[tokio::test]
async fn shutdown_with_open_streams_and_publishes_in_flight_loses_nothing_acknowledged() {
    let backend = Backend::valkey();
    let flags = ["--history-len", "100000", "--shutdown-grace-secs", "5"];
    let a = Bridge::on(&backend, &flags).await;
    let ch = channel("shutdown");
    let token = subscriber_token(TENANT);
    let mut stream = a.subscribe(&[&ch], &token, None).await;

    // Publishers hammer the node until it stops answering.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let mut publisher = a.publisher().await;
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            for n in 0u32.. {
                let request =
                    client::request(pb_channel(TENANT, "shutdown"), progress(n, u32::MAX), "");
                match publisher.publish(request).await {
                    Ok(r) => acked.lock().unwrap().push(r.into_inner().id),
                    Err(_) => return w,
                }
            }
            w
        }));
    }
    // Let some publishes through, then stop the node under load.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while acked.lock().unwrap().len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes too slow to start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.stop().await;
    for w in workers {
        tokio::time::timeout(PATIENCE, w)
            .await
            .expect("publishers see the node go")
            .unwrap();
    }

    // The open stream was told to reconnect within the jitter window
    // (--drain-jitter-ms, 1000 by default; the opening `retry:` was 2000),
    // then closed.
    let mut retries = Vec::new();
    while let Some(f) = stream.next_frame().await {
        if let Some(r) = f.retry {
            retries.push(r.parse::<u64>().expect("a number"));
        }
    }
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[1] <= 1000,
        "a reconnect hint within the jitter window: {retries:?}"
    );

    // Every acknowledged event is in history, as another node sees it.
    let acked = acked.lock().unwrap().clone();
    let b = Bridge::on(&backend, &flags).await;
    let mut resumed = b.subscribe(&[&ch], &token, Some("0-0")).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < acked.len() {
        let f = resumed.next_event().await;
        assert_eq!(f.event.as_deref(), Some("scan.progress"), "{f:?}");
        seen.insert(f.id.unwrap());
    }
    for id in &acked {
        assert!(seen.contains(id), "acknowledged {id} was lost");
    }
    b.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_never_contain_tokens() {
    let (http, grpc) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--jwt-secret",
            SECRET,
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while http_client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = subscriber_token(TENANT);
    let ch = channel("logs");
    // A query token (accepted), a bad query token, and a header token.
    let ok = http_client()
        .get(format!(
            "{base}/v1/events?channel={ch}&access_token={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    drop(ok);
    let bad = format!("{token}x");
    let refused = http_client()
        .get(format!("{base}/v1/events?channel={ch}&access_token={bad}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let header = http_client()
        .get(format!("{base}/v1/events?channel={ch}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    drop(header);
    let publisher_token = publisher_token(&["*"]);
    let mut publisher = client::connect(&format!("http://127.0.0.1:{grpc}"), &publisher_token)
        .await
        .unwrap();
    publish(&mut publisher, "logs", progress(1, 2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stop it and read everything it logged.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut logs = String::new();
    tokio::time::timeout(PATIENCE, stderr.read_to_string(&mut logs))
        .await
        .unwrap()
        .unwrap();
    child.wait().await.unwrap();

    let signature = token.rsplit('.').next().unwrap();
    let publisher_signature = publisher_token.rsplit('.').next().unwrap();
    for needle in [token.as_str(), signature, publisher_signature] {
        assert!(
            !logs.contains(needle),
            "a token leaked into the logs:\n{logs}"
        );
    }
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert!(
        requests.iter().any(|l| l["fields"]["target"]
            .as_str()
            .unwrap()
            .contains("access_token=%5Bredacted%5D")),
        "request lines show the query with the token replaced:\n{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "stream opened")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "subscriber refused")
    );
}
