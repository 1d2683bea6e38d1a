//! The bridge a run measures: one this command spawns (so its memory can be
//! read from `/proc/<pid>/status`) or one already running.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::args::BenchArgs;
use super::keys::Signer;

pub(super) struct Target {
    pub(super) http: String,
    pub(super) grpc: String,
    /// The bridge's HS256 secret: publisher tokens, and subscriber tokens
    /// unless `signer` says otherwise.
    pub(super) secret: String,
    pub(super) signer: Signer,
    pub(super) pid: Option<u32>,
    pub(super) child: Option<tokio::process::Child>,
}

impl Target {
    /// A spawned bridge that is exiting (say it could not reach Valkey)
    /// explains a failure better than the sockets it reset on its way out.
    pub(super) async fn explain<T>(&mut self, r: Result<T>) -> Result<T> {
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let Some(child) = self.child.as_mut() {
            let exited = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            if let Ok(Ok(status)) = exited {
                bail!("the spawned bridge exited ({status}); its error is above");
            }
        }
        Err(e)
    }
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn spawn_bridge(args: &BenchArgs) -> Result<Target> {
    let secret = format!("bench-{}", uuid::Uuid::new_v4());
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args([
        "serve",
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--grpc-addr",
        &format!("127.0.0.1:{grpc_port}"),
        "--history-len",
        &(args.events.max(1000) + 10).to_string(),
        "--max-channels",
        "10",
        // The load generator is one tenant, one subject and one publisher.
        "--max-streams-per-tenant",
        "0",
        "--max-streams-per-subject",
        "0",
        "--publish-rate",
        "0",
    ]);
    let signer = Signer::new(args.alg, &secret, args.rsa_key.as_deref())?;
    cmd.args(signer.serve_args(&secret));
    if let Some(url) = &args.valkey_url {
        cmd.args(["--valkey-url", url]);
    }
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    let mut child = cmd.spawn().context("spawn the bridge")?;
    let pid = child.id();
    let http = format!("http://127.0.0.1:{http_port}");
    wait_for_port(&mut child, grpc_port, "the spawned bridge").await?;
    Ok(Target {
        http,
        grpc: format!("http://127.0.0.1:{grpc_port}"),
        secret,
        signer,
        pid,
        child: Some(child),
    })
}

/// Waits until a spawned server (`what`) accepts on `port`. One that could
/// not start (say Valkey is not there) has said why on its stderr and
/// exited: point there rather than wait.
pub(super) async fn wait_for_port(
    child: &mut tokio::process::Child,
    port: u16,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}); its error is above");
        }
        if Instant::now() > deadline {
            bail!("{what} did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Resident memory of a process, in KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory a process has had, in KiB.
pub(super) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time a process has used so far (user and system), in µs; `None`
/// for a pid this system does not show.
pub(super) fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Clock ticks are 1/100 s on Linux (`getconf CLK_TCK`).
    Some(ticks * 10_000)
}
