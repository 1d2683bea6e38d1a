//! A TCP proxy on loopback in front of Valkey that can black-hole a node's
//! subscription connections: the ones that name themselves
//! `sse-bridge-subscriptions` in their `HELLO`. A cut one never carries
//! another byte and is never closed, as when a route dies without a reset;
//! while the cut lasts, new ones get the same. Other connections (the
//! node's commands) pass untouched. It can also fail over: every
//! connection is closed and new ones go to another server, as when a
//! virtual address moves to a promoted replica.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SUBSCRIPTIONS: &[u8] = b"sse-bridge-subscriptions";

pub struct BlackHole {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    upstream: watch::Sender<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = watch::channel(false);
        let (upstream, to) = watch::channel(upstream);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (watch, mut to) = (watch.clone(), to.clone());
                let upstream = *to.borrow_and_update();
                conns.spawn(async move {
                    tokio::select! {
                        () = serve(client, upstream, watch) => {}
                        // Failed over: this connection is closed.
                        _ = to.changed() => {}
                    }
                });
            }
        });
        BlackHole {
            addr,
            cut,
            upstream,
            task,
        }
    }

    /// Closes every connection; new ones go to `upstream`.
    pub fn fail_over(&self, upstream: SocketAddr) {
        let _ = self.upstream.send(upstream);
    }

    /// Cuts the subscription connections (`true`) or lets new ones through
    /// again (`false`); what was cut stays dead.
    pub fn cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection's task: no socket outlives the proxy.
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let mut first = vec![0u8; 4096];
    let n = match client.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    let subscription = first
        .windows(SUBSCRIPTIONS.len())
        .any(|w| w == SUBSCRIPTIONS);
    let cut_now = *cut.borrow();
    if subscription && cut_now {
        return swallow(client).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if tokio::io::AsyncWriteExt::write_all(&mut server, &first)
        .await
        .is_err()
    {
        return;
    }
    if !subscription {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        cut = cut.wait_for(|c| *c) => cut.is_ok(),
    };
    if was_cut {
        drop(server);
        swallow(client).await;
    }
}

/// Reads and drops whatever the client sends, answers nothing, and keeps
/// the socket open until the client closes it.
async fn swallow(mut client: TcpStream) {
    let mut sink = vec![0u8; 4096];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
}
