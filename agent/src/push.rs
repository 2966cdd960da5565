//! Talking to menshen: `PUT /api/5/agent/gateways` and `/bridges`, each with
//! the agent's whole current set of that kind.

use std::fmt;
use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, TokenSource};
use crate::report::Report;

/// How a push went wrong, by what the agent should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// No answer, a timeout or a 5xx (or 408/429): retry soon, backing off.
    Transient(String),
    /// menshen cannot store anything now and said when to come back (a 503
    /// or 429 with `Retry-After`, e.g. while its database is unreachable).
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// menshen refused the agent: 401 (token), 403 (a host owned by another
    /// agent) or another 4xx. Only an operator can fix it: retry slowly.
    Refused { status: u16, detail: String },
    /// menshen refused what was sent: 422 (with the fields at fault) or 413.
    /// A configuration problem here: retry at the heartbeat pace.
    Invalid {
        status: u16,
        detail: String,
        fields: Vec<String>,
    },
    /// The token could not be read here.
    Token(String),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Transient(m) => write!(f, "menshen unreachable or failing: {m}"),
            PushError::Unavailable { detail, .. } => {
                write!(f, "menshen cannot store pushes now: {detail}")
            }
            PushError::Refused {
                status: 401,
                detail,
            } => write!(
                f,
                "menshen refused the token (401: bad, expired or revoked; check token_file / MENSHEN_AGENT_TOKEN): {detail}"
            ),
            PushError::Refused {
                status: 403,
                detail,
            } => write!(
                f,
                "menshen refused a host as owned by another agent (403): {detail}"
            ),
            PushError::Refused { status, detail } => {
                write!(f, "menshen refused the request ({status}): {detail}")
            }
            PushError::Invalid {
                status,
                detail,
                fields,
            } => {
                write!(f, "menshen refused what was sent ({status}): {detail}")?;
                for field in fields {
                    write!(f, "; {field}")?;
                }
                Ok(())
            }
            PushError::Token(m) => write!(f, "no token: {m}"),
        }
    }
}

impl std::error::Error for PushError {}

/// What a successful push stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Whether menshen created anything (a 201 to either PUT).
    pub created: bool,
    pub gateways: usize,
    pub bridges: usize,
}

/// An HTTP client for one menshen.
pub struct Pusher {
    client: Client,
    gateways_url: Url,
    bridges_url: Url,
    token: TokenSource,
}

impl fmt::Debug for Pusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("gateways_url", &self.gateways_url.as_str())
            .field("bridges_url", &self.bridges_url.as_str())
            .field("token", &self.token)
            .finish()
    }
}

impl Pusher {
    /// A client for the menshen and token in `config`; both must be set.
    pub fn new(config: &Config) -> Result<Pusher, String> {
        let (Some(gateways_url), Some(bridges_url)) =
            (config.endpoint("gateways"), config.endpoint("bridges"))
        else {
            return Err(
                "no menshen URL: set menshen_url in the configuration or MENSHEN_AGENT_URL".into(),
            );
        };
        let token = config.token.clone().ok_or(
            "no token: set token_file in the configuration, MENSHEN_AGENT_TOKEN_FILE or MENSHEN_AGENT_TOKEN",
        )?;
        // Refuse to start without a readable token; later failures to read
        // it (a file being replaced) are retried.
        token.read()?;
        let client = Client::builder()
            .user_agent(concat!("menshen-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            // Both PUTs of a push share a connection; none is kept between
            // heartbeats, where a server may have closed it.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Pusher {
            client,
            gateways_url,
            bridges_url,
            token,
        })
    }

    /// Sends both lists. The gateways go first; if that fails, the bridges
    /// are not sent (the next attempt sends both). Both requests belong to
    /// one trace (W3C `traceparent`), whose id is logged.
    pub async fn push(&self, report: &Report) -> Result<Pushed, PushError> {
        let token = self.token.read().map_err(PushError::Token)?;
        let trace = TraceId::new();
        tracing::debug!(trace_id = %trace, "pushing");
        let g = self
            .put(&self.gateways_url, &report.gateways, token.expose(), &trace)
            .await?;
        let b = self
            .put(&self.bridges_url, &report.bridges, token.expose(), &trace)
            .await?;
        Ok(Pushed {
            created: g.0 || b.0,
            gateways: g.1,
            bridges: b.1,
        })
    }

    /// PUTs empty lists: menshen stops listing this agent's resources.
    pub async fn withdraw(&self) -> Result<(), PushError> {
        self.push(&Report::default()).await.map(|_| ())
    }

    async fn put<T: Serialize>(
        &self,
        url: &Url,
        items: &[T],
        token: &str,
        trace: &TraceId,
    ) -> Result<(bool, usize), PushError> {
        let response = self
            .client
            .put(url.clone())
            .bearer_auth(token)
            .header("traceparent", trace.traceparent())
            .json(items)
            .send()
            .await
            .map_err(|e| PushError::Transient(format!("{} (trace {trace})", describe(&e, url))))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| PushError::Transient(format!("{} (trace {trace})", describe(&e, url))))?;
        classify(status, retry_after, &body, url)
    }
}

/// The trace of one push: a W3C trace id, and a fresh span id per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(u128);

impl TraceId {
    pub fn new() -> TraceId {
        // All zeroes is invalid.
        TraceId(fastrand::u128(1..))
    }

    /// A `traceparent` header value: this trace, a new span, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.0, fastrand::u64(1..))
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Longest `Retry-After` heeded: a server asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// `Retry-After` in seconds (an HTTP date is not expected from menshen and
/// is ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// A reqwest error with its causes (reqwest's own text is terse).
fn describe(e: &reqwest::Error, url: &Url) -> String {
    let mut text = format!("PUT {url}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Turns menshen's answer into an outcome.
fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
    url: &Url,
) -> Result<(bool, usize), PushError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if status.is_success() {
        let stored = json.as_ref().and_then(Value::as_array).map_or(0, Vec::len);
        return Ok((status == StatusCode::CREATED, stored));
    }
    let code = status.as_u16();
    let detail = format!("PUT {url}: {}", summary(json.as_ref(), body));
    if let Some(retry_after) = retry_after
        && (status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS)
    {
        return Err(PushError::Unavailable {
            detail: format!("{code}, {detail}"),
            retry_after,
        });
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return Err(PushError::Transient(format!("{code}, {detail}")));
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::PAYLOAD_TOO_LARGE {
        let fields = json
            .as_ref()
            .and_then(|v| v.get("fields"))
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| {
                        let name = f.get("field").and_then(Value::as_str).unwrap_or("?");
                        let msg = f.get("message").and_then(Value::as_str).unwrap_or("");
                        format!("{name}: {msg}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Err(PushError::Invalid {
            status: code,
            detail,
            fields,
        });
    }
    Err(PushError::Refused {
        status: code,
        detail,
    })
}

/// The useful part of an error body: its `message` (and anything else it
/// says besides `error` and `fields`) if it is JSON, else its text, short.
fn summary(json: Option<&Value>, body: &str) -> String {
    if let Some(Value::Object(map)) = json {
        let mut parts = Vec::new();
        if let Some(m) = map.get("message").and_then(Value::as_str) {
            parts.push(m.to_owned());
        }
        for (k, v) in map {
            if !matches!(k.as_str(), "message" | "error" | "fields") {
                parts.push(format!("{k}={v}"));
            }
        }
        if !parts.is_empty() {
            return clip(&parts.join(", "));
        }
    }
    let text = body.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        clip(text)
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 500;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://m/api/5/agent/gateways").unwrap()
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            classify(StatusCode::CREATED, None, "[{},{}]", &url()),
            Ok((true, 2))
        );
        assert_eq!(classify(StatusCode::OK, None, "[]", &url()), Ok((false, 0)));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None, "", &url()),
            Err(PushError::Transient(_))
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, "", &url()),
            Err(PushError::Transient(_))
        ));
        let e = classify(
            StatusCode::UNAUTHORIZED,
            None,
            r#"{"error":"unauthorized","message":"token expired"}"#,
            &url(),
        )
        .unwrap_err();
        assert!(matches!(e, PushError::Refused { status: 401, .. }));
        assert!(e.to_string().contains("token expired"), "{e}");
        let e = classify(
            StatusCode::FORBIDDEN,
            None,
            r#"{"error":"forbidden","message":"host is owned by another agent","host":"gw1"}"#,
            &url(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("owned by another agent") && text.contains("gw1"),
            "{text}"
        );
        let e = classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            r#"{"error":"invalid_fields","message":"invalid","fields":[{"field":"gateways[0].ip_addr","message":"not an IPv4 address"}]}"#,
            &url(),
        )
        .unwrap_err();
        let PushError::Invalid { fields, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(fields, &["gateways[0].ip_addr: not an IPv4 address"]);
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, None, "too big", &url()),
            Err(PushError::Invalid { status: 413, .. })
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None, "<html>", &url()),
            Err(PushError::Refused { status: 404, .. })
        ));
    }

    #[test]
    fn retry_after_is_heeded_on_503_and_429() {
        let e = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(1)),
            r#"{"error":"store_unavailable","message":"the database cannot be reached"}"#,
            &url(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            PushError::Unavailable {
                detail: "503, PUT http://m/api/5/agent/gateways: the database cannot be reached"
                    .into(),
                retry_after: Duration::from_secs(1)
            }
        );
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                "",
                &url()
            ),
            Err(PushError::Unavailable { .. })
        ));
        // elsewhere it means nothing
        assert!(matches!(
            classify(
                StatusCode::BAD_GATEWAY,
                Some(Duration::from_secs(3)),
                "",
                &url()
            ),
            Err(PushError::Transient(_))
        ));
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn traceparents_are_w3c() {
        let trace = TraceId::new();
        let a = trace.traceparent();
        let b = trace.traceparent();
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        assert_eq!(parts[1], trace.to_string());
        // one trace, a span per request
        assert_eq!(a[..35], b[..35]);
        assert_ne!(a, b);
    }

    #[test]
    fn long_bodies_are_clipped() {
        let long = "é".repeat(1000);
        let s = summary(None, &long);
        assert!(s.len() < 510 && s.ends_with('…'));
    }
}
