//! The developer console's contract: `/console` only with `--console` (or
//! `--dev`), the page told this node's gRPC port, and gRPC-Web open to the
//! page's own origin. The page itself is driven in Chromium by
//! clients/typescript/test/console.test.js.

use crate::grpc_web::allowed_origin as preflight;
use crate::harness::*;

#[tokio::test]
async fn the_console_is_served_only_when_asked_for() {
    let off = Bridge::start(&[]).await;
    let r = off.get(&format!("{}/console", off.http), &[]).await;
    assert_eq!(r.status(), 404);
    off.stop().await;

    let on = Bridge::start(&["--console"]).await;
    let r = on.get(&format!("{}/console", on.http), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    let grpc_port = on.grpc.rsplit(':').next().unwrap();
    assert!(
        page.contains(&format!("const GRPC_PORT = \"{grpc_port}\";")),
        "the page calls this node's gRPC port"
    );
    assert!(!page.contains("__GRPC_PORT__"));
    // The page's own origin may call gRPC-Web; another may not.
    let http_port = on.http.rsplit(':').next().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let origin = format!("http://{host}:{http_port}");
        assert_eq!(
            preflight(&on, &origin).await.as_deref(),
            Some(origin.as_str())
        );
    }
    assert_eq!(preflight(&on, "http://127.0.0.1:1").await, None);
    assert_eq!(preflight(&on, "https://elsewhere.example").await, None);
    on.stop().await;
}
