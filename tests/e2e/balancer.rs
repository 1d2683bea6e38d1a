//! A small load balancer on loopback for the drain test: each new TCP
//! connection goes to the first backend whose `/readyz` answers 200, as a
//! balancer's readiness check would route it, and is then passed through
//! untouched until either side closes.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

pub struct Balancer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// Listens on a free loopback port in front of `backends` (HTTP
    /// addresses, in order of preference).
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                conns.spawn(async move {
                    for backend in backends {
                        if !ready(backend).await {
                            continue;
                        }
                        if let Ok(mut upstream) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                    // No backend ready: the client's connection just closes.
                });
            }
        });
        Balancer { addr, task }
    }
}

async fn ready(backend: SocketAddr) -> bool {
    let url = format!("http://{backend}/readyz");
    matches!(
        reqwest::Client::new().get(url).send().await,
        Ok(r) if r.status() == 200
    )
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
