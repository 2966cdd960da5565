//! A yardstick for `bench/client-api.sh`: axum serving one fixed body (a
//! file read at start) at every path, with nothing else around it, the
//! way menshen's listener is set up (TCP_NODELAY). What the HTTP stack
//! alone costs, to tell it from what assembling an answer costs.
//!
//!   cargo run --release -p menshen --example fixed_body -- FILE ADDRESS

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::serve::ListenerExt;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(address)) = (args.next(), args.next()) else {
        eprintln!("usage: fixed_body FILE ADDRESS");
        std::process::exit(2);
    };
    let body = Bytes::from(std::fs::read(&file).expect("reading the body"));
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(CONTENT_TYPE, "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .expect("listening")
        .tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
    axum::serve(listener, app).await.expect("serving");
}
