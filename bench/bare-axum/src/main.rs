//! `bare-axum [ADDR]`: answers every request with an empty `200 OK` (default 127.0.0.1:4190).
//! Routing mirrors the sidecar's forwardAuth paths so both pay for the same router lookup.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;

async fn ok() -> StatusCode {
    StatusCode::OK
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4190".to_string());
    let app = Router::new()
        .route("/auth", any(ok))
        .route("/auth/{middleware}", any(ok))
        .fallback(ok);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
