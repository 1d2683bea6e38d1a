//! The cluster chaos soak ([`crate::cluster::cluster_soak`]): its load, its
//! faults and its accounting.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sse_bridge::client;
use tonic::Code;

use crate::harness::*;
use crate::valkey_server::Cluster;

const CHANNELS: usize = 1000;
/// Channels per stream; ten streams cover all the channels.
const PER_STREAM: usize = 100;

/// The two bridge nodes' addresses (HTTP, gRPC), swapped when one restarts.
type Nodes = Arc<RwLock<Vec<(String, String)>>>;

/// What one stream (and the streams it resumed as) received.
#[derive(Default)]
struct Seen {
    /// Channel index → sequence numbers delivered, in arrival order.
    delivered: HashMap<usize, Vec<usize>>,
    /// Channels a `bridge.reset` named.
    reset: HashSet<usize>,
    resumes: usize,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn open(nodes: &Nodes, node: usize, names: &[String], cursor: Option<&str>) -> Option<Sse> {
    let http = nodes.read().unwrap()[node % 2].0.clone();
    let mut url = format!("{http}/v1/events?");
    for n in names {
        url.push_str("channel=");
        url.push_str(n);
        url.push('&');
    }
    let mut req = http_client().get(url).header(
        "authorization",
        format!("Bearer {}", subscriber_token(TENANT)),
    );
    if let Some(c) = cursor {
        req = req.header("last-event-id", c);
    }
    match req.send().await {
        Ok(r) if r.status() == 200 => Some(Sse::new(r)),
        _ => None,
    }
}

/// One subscriber: reads its channels, and whenever its stream ends (or
/// `churn` asks) resumes with its last cursor on the other node.
async fn subscriber(
    nodes: Nodes,
    index: usize,
    seen: Arc<Mutex<Seen>>,
    churn: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) {
    let first = index * PER_STREAM;
    let names: Vec<String> = (first..first + PER_STREAM)
        .map(|i| channel(&format!("c{i}")))
        .collect();
    let mut node = index;
    let mut cursor: Option<String> = None;
    while !done.load(Ordering::Relaxed) {
        let Some(mut sse) = open(&nodes, node, &names, cursor.as_deref()).await else {
            node += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            if done.load(Ordering::Relaxed) {
                return;
            }
            if churn.swap(false, Ordering::Relaxed) {
                break;
            }
            let frame =
                match tokio::time::timeout(Duration::from_millis(500), sse.next_frame()).await {
                    Err(_) => continue,
                    Ok(None) => break,
                    Ok(Some(f)) => f,
                };
            if frame.id.is_some() {
                cursor = frame.id.clone();
            }
            let mut seen = seen.lock().unwrap();
            match frame.event.as_deref() {
                Some("scan.progress") => {
                    let n = frame.data_json()["checked"].as_u64().unwrap_or(0) as usize;
                    seen.delivered.entry(n / 1000).or_default().push(n % 1000);
                }
                Some("bridge.reset") => {
                    for c in frame.data_json()["channels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        if let Some(i) = names.iter().position(|n| Some(n.as_str()) == c.as_str()) {
                            seen.reset.insert(first + i);
                        }
                    }
                }
                _ => {}
            }
        }
        seen.lock().unwrap().resumes += 1;
        node += 1;
    }
}

pub async fn run() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let length = Duration::from_secs(secs);
    let mut cluster = Cluster::start(3, 1).await;
    let flags = ["--max-channels", "128", "--history-len", "5000"];
    let url = cluster.url();
    let mut bridges = vec![
        Bridge::with_valkey_url(Some(&url), &flags).await,
        Bridge::with_valkey_url(Some(&url), &flags).await,
    ];
    let nodes: Nodes = Arc::new(RwLock::new(
        bridges
            .iter()
            .map(|b| (b.http.clone(), b.grpc.clone()))
            .collect(),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let streams = CHANNELS / PER_STREAM;
    let seen: Vec<Arc<Mutex<Seen>>> = (0..streams).map(|_| Arc::default()).collect();
    let churn: Vec<Arc<AtomicBool>> = (0..streams).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for i in 0..streams {
        readers.push(tokio::spawn(subscriber(
            nodes.clone(),
            i,
            seen[i].clone(),
            churn[i].clone(),
            done.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The publisher: round robin over the channels, each event keyed, on
    // alternate nodes; UNAVAILABLE is retried with the same key.
    let acked: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(vec![0; CHANNELS]));
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (nodes, acked, publishing) = (nodes.clone(), acked.clone(), publishing.clone());
        tokio::spawn(async move {
            let mut retries = 0u64;
            let mut n = 0usize;
            let mut clients: HashMap<String, client::Client> = HashMap::new();
            while publishing.load(Ordering::Relaxed) {
                let c = n % CHANNELS;
                let seq = n / CHANNELS;
                let ev = progress((c * 1000 + seq) as u32, 1_000_000);
                let key = format!("e{c}-{seq}");
                let mut attempt = 0;
                loop {
                    let grpc = nodes.read().unwrap()[(n + attempt) % 2].1.clone();
                    let p = match clients.get_mut(&grpc) {
                        Some(p) => p,
                        None => match client::connect(&grpc, &publisher_token(&["*"])).await {
                            Ok(p) => clients.entry(grpc.clone()).or_insert(p),
                            Err(_) => {
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    let req =
                        client::request(pb_channel(TENANT, &format!("c{c}")), ev.clone(), &key);
                    match p.publish(req).await {
                        Ok(_) => break,
                        Err(s) => {
                            assert!(
                                matches!(
                                    s.code(),
                                    Code::Unavailable | Code::Cancelled | Code::Unknown
                                ),
                                "{s:?}"
                            );
                            clients.remove(&grpc);
                            retries += 1;
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked.lock().unwrap()[c] = seq + 1;
                n += 1;
                // About 200 events/s.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (n, retries)
        })
    };

    let start = Instant::now();
    let mut rss = vec![(0u64, rss_kib())];
    let mut faults: Vec<String> = Vec::new();
    let mut step = 0;
    let mut last_churn = Instant::now();
    while start.elapsed() < length {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at = start.elapsed().as_secs_f64() / length.as_secs_f64();
        if start.elapsed().as_secs() % 30 == 0 {
            rss.push((start.elapsed().as_secs(), rss_kib()));
        }
        if last_churn.elapsed() > Duration::from_secs(5) {
            // One subscriber drops and resumes on the other node.
            churn[(start.elapsed().as_secs() as usize / 5) % streams]
                .store(true, Ordering::Relaxed);
            last_churn = Instant::now();
        }
        if step == 0 && at > 0.2 {
            let slot = cluster.keyslot(&channel("c0")).await;
            let victim = cluster.owner(slot).await;
            cluster.nodes[victim].kill();
            let t = Instant::now();
            cluster.until_owner_is_not(slot, victim).await;
            faults.push(format!(
                "primary {victim} killed at {:.0} s; its replica took over in {:.1} s",
                start.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            ));
            cluster.nodes[victim].restart();
            step = 1;
        } else if step == 1 && at > 0.45 {
            let slot = cluster.keyslot(&channel("c1")).await;
            let from = cluster.owner(slot).await;
            let primaries = cluster.primaries_now().await;
            let to = primaries
                .into_iter()
                .find(|&i| i != from)
                .expect("another primary");

            let t = Instant::now();
            cluster.migrate(slot, to, || async {}).await;
            faults.push(format!(
                "slot {slot} migrated at {:.0} s in {:.1} s",
                start.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64()
            ));
            step = 2;
        } else if step == 2 && at > 0.7 {
            let old = bridges.remove(1);
            old.stop().await;
            let fresh = Bridge::with_valkey_url(Some(&url), &flags).await;
            nodes.write().unwrap()[1] = (fresh.http.clone(), fresh.grpc.clone());
            bridges.push(fresh);
            faults.push(format!(
                "bridge node restarted at {:.0} s",
                start.elapsed().as_secs_f64()
            ));
            step = 3;
        }
    }
    publishing.store(false, Ordering::Relaxed);
    let (published, retries) = publisher.await.expect("the publisher ran");
    rss.push((start.elapsed().as_secs(), rss_kib()));

    // Drain: wait until every stream has every acknowledged event or a
    // reset for its channel, then account.
    let acked = acked.lock().unwrap().clone();
    let drain = Instant::now();
    let missing = |s: &Seen, c: usize| {
        if s.reset.contains(&c) {
            return 0;
        }
        let got: HashSet<usize> = s
            .delivered
            .get(&c)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        (0..acked[c]).filter(|q| !got.contains(q)).count()
    };
    loop {
        let left: usize = (0..streams)
            .map(|i| {
                let s = seen[i].lock().unwrap();
                (i * PER_STREAM..(i + 1) * PER_STREAM)
                    .map(|c| missing(&s, c))
                    .sum::<usize>()
            })
            .sum();
        if left == 0 || drain.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    let (mut delivered, mut duplicates, mut lost, mut reset, mut resumes, mut out_of_order) =
        (0, 0, 0, 0, 0, 0);
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        resumes += s.resumes;
        reset += s.reset.len();
        for c in i * PER_STREAM..(i + 1) * PER_STREAM {
            let got = s.delivered.get(&c).cloned().unwrap_or_default();
            delivered += got.len();
            let unique: HashSet<usize> = got.iter().copied().collect();
            duplicates += got.len() - unique.len();
            out_of_order += got.windows(2).filter(|w| w[1] <= w[0]).count();
            lost += missing(&s, c);
        }
    }
    println!(
        "soak: {secs} s, {CHANNELS} channels, {streams} streams of {PER_STREAM} over 2 bridge nodes, cluster 3 primaries + 3 replicas"
    );
    println!(
        "soak: published and acknowledged {published} events ({retries} retries of UNAVAILABLE)"
    );
    println!(
        "soak: delivered {delivered}; lost without a reset {lost}; duplicates {duplicates}; out of order {out_of_order}; channels reset {reset}; resumes {resumes}"
    );
    for f in &faults {
        println!("soak: {f}");
    }
    println!(
        "soak: test-process RSS (both bridges, the load, the clients), KiB at seconds: {rss:?}"
    );
    for b in bridges {
        b.stop().await;
    }
    assert_eq!(
        lost, 0,
        "every acknowledged event delivered or covered by a reset"
    );
    assert_eq!(duplicates, 0);
    assert_eq!(out_of_order, 0);
    assert_eq!(faults.len(), 3, "every fault ran: {faults:?}");
}
