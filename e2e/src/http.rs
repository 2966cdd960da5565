//! Small HTTP requests the end-to-end tests make of what they started,
//! and the waits on their answers.

use std::cell::RefCell;
use std::time::Duration;

use serde_json::Value;

use crate::wait::poll;

/// GET `url` with a client that gives up after `timeout`: the status and
/// the body, or `None` when nothing answers (yet).
pub async fn get_within(url: &str, timeout: Duration) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Polls `url` (each request given up after `timeout`) until it answers
/// 200 with JSON that `pred` holds for, within `within`; on failure says
/// what it last saw, and `context()`.
pub async fn wait_json(
    url: &str,
    timeout: Duration,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
    context: impl Fn() -> String,
) -> Value {
    let last = RefCell::new(Value::Null);
    let found = poll(within, || async {
        let (200, body) = get_within(url, timeout).await? else {
            return None;
        };
        let value = serde_json::from_str::<Value>(&body).ok()?;
        if pred(&value) {
            return Some(value);
        }
        last.replace(value);
        None
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "{url}: never as expected within {within:?}; last: {}\n{}",
            last.borrow(),
            context()
        )
    })
}

/// Polls `url` until it answers 200, within `within`; on failure names it
/// and `context()`.
pub async fn wait_ok(url: &str, timeout: Duration, within: Duration, context: impl Fn() -> String) {
    let ok = poll(within, || async {
        matches!(get_within(url, timeout).await, Some((200, _))).then_some(())
    })
    .await;
    if ok.is_none() {
        panic!("{url} never answered 200; {}", context());
    }
}

/// The item of a JSON list of gateways or bridges with `host`.
pub fn find_host<'a>(list: &'a Value, host: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|g| g["host"] == host)
}

/// GET `url`: its body as text, whatever the status.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// GET `url`, which must answer 200: its JSON.
pub async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("request");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("json")
}

/// Sends `request`: its JSON answer, whatever the status.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// GET `url` with `token` as bearer token: its JSON, whatever the status.
pub async fn get_json_as(url: &str, token: &str) -> Value {
    json_of(reqwest::Client::new().get(url).bearer_auth(token)).await
}

/// The value of the sample `series` (name and labels as exposed) in a
/// metrics exposition, if any.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
