//! The LEAP v5 client contract, checked field by field over real HTTP, on
//! every store backend.

#[path = "../common/mod.rs"]
mod common;

mod bridges;
mod changes;
mod contract;
mod lists;
mod provider;
mod signed;

use serde_json::Value;

/// A list sorted by host.
fn by_host(mut list: Value) -> Value {
    list.as_array_mut()
        .expect("a JSON array")
        .sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
    list
}

async fn content_type(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}
