//! TLS on both listeners: SSE over HTTP/2 (several streams on one
//! connection) and gRPC with client certificates (mTLS).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sse_bridge::client;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::harness::*;

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, all signed by the CA, in a fresh directory.
fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!("sse-bridge-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["publisher.example".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    write(&dir, "server.pem", &server.pem());
    write(&dir, "server.key", &server_key.serialize_pem());
    write(&dir, "ca.pem", &ca.pem());
    Pki {
        ca_pem: ca.pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        dir,
    }
}

#[tokio::test]
async fn sse_over_http2_and_grpc_with_client_certificates() {
    let pki = pki();
    let path = |name: &str| pki.dir.join(name).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let bridge = Bridge::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--grpc-client-ca",
        &ca,
    ])
    .await;
    let https = bridge.http.replace("http://", "https://");
    let grpcs = bridge.grpc.replace("http://", "https://");

    // Browsers negotiate h2 by ALPN; so does this client.
    let root = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let web = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .build()
        .unwrap();
    let token = subscriber_token(TENANT);
    let mut streams = Vec::new();
    for resource in ["tls-1", "tls-2", "tls-3"] {
        let response = web
            .get(format!("{https}/v1/events?channel={}", channel(resource)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        streams.push(Sse::new(response));
    }
    // Plain HTTP to a TLS port is not served.
    assert!(
        http_client()
            .get(format!("{}/healthz", bridge.http))
            .send()
            .await
            .is_err()
    );

    // gRPC with the client certificate publishes; the events arrive on
    // their HTTP/2 streams.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let with_cert = Endpoint::from_shared(grpcs.clone())
        .unwrap()
        .tls_config(
            tls.clone()
                .identity(Identity::from_pem(&pki.client_cert, &pki.client_key)),
        )
        .unwrap();
    let mut publisher = client::connect_endpoint(with_cert, &publisher_token(&["*"]))
        .await
        .unwrap();
    for (n, resource) in ["tls-1", "tls-2", "tls-3"].iter().enumerate() {
        let id = publish(&mut publisher, resource, progress(n as u32, 10)).await;
        assert_eq!(streams[n].next_event().await.id, Some(id));
    }

    // Without a client certificate the handshake is refused.
    let without_cert = Endpoint::from_shared(grpcs)
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let refused = match client::connect_endpoint(without_cert, &publisher_token(&["*"])).await {
        Err(_) => true,
        Ok(mut c) => publish_err(&mut c).await,
    };
    assert!(refused, "a publisher without a client certificate got in");
    bridge.stop().await;
}

async fn publish_err(c: &mut client::Client) -> bool {
    c.publish(client::request(
        pb_channel(TENANT, "tls-1"),
        progress(1, 2),
        "",
    ))
    .await
    .is_err()
}
