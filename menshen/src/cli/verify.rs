//! `menshen verify URL`: fetches a client answer and checks its signature
//! (see [`crate::sign`]).

use std::path::PathBuf;

use clap::Args;
use menshen_model::{Provider, SigningKeyInfo};

use super::exit::Invalid;
use crate::sign;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The answer to check, e.g. https://api.example.org/api/5/gateways.
    url: String,

    /// A key to believe: `KID=BASE64`, or the line `menshen pki list-key`
    /// prints; repeatable. Without one, the keys of
    /// the /provider.json of the URL's server are believed (as far as that
    /// file can be trusted: pin the key with --key).
    #[arg(long = "key", value_name = "KID=BASE64")]
    keys: Vec<String>,

    /// The provider's description to take the keys from instead, a URL or a
    /// file.
    #[arg(long, value_name = "URL|FILE", conflicts_with = "keys")]
    provider: Option<String>,

    /// A CA certificate (PEM) to trust for HTTPS besides the system's, such
    /// as the provider CA (`/ca.crt`).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

fn client(ca_cert: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(path) = ca_cert {
        let pem = super::args::read_file(path)?;
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| Invalid::err(format!("{}: not a PEM certificate: {e}", path.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

/// `/provider.json` of the server of `url`.
fn provider_url(url: &str) -> anyhow::Result<String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| Invalid::err(format!("{url:?} is not a URL: {e}")))?;
    Ok(parsed.join("/provider.json")?.to_string())
}

/// `KID=BASE64`, or the line `menshen pki list-key` prints
/// (`kid=KID public_key=BASE64`).
fn parse_key(text: &str) -> anyhow::Result<SigningKeyInfo> {
    let plain = text.trim();
    let plain = plain.strip_prefix("kid=").unwrap_or(plain);
    let plain = plain.replacen(" public_key=", "=", 1);
    let (kid, public_key) = plain
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| Invalid::err(format!("--key {text:?} is not KID=BASE64")))?;
    Ok(SigningKeyInfo {
        kid: kid.to_owned(),
        alg: "ed25519".into(),
        public_key: public_key.to_owned(),
    })
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let http = client(args.ca_cert.as_ref())?;
    let (keys, from) = if !args.keys.is_empty() {
        let keys = args
            .keys
            .iter()
            .map(|k| parse_key(k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        (keys, "--key".to_owned())
    } else {
        let source = match &args.provider {
            Some(p) => p.clone(),
            None => provider_url(&args.url)?,
        };
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            http.get(&source)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?
        } else {
            super::args::read_file(std::path::Path::new(&source))?
        };
        let provider: Provider = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{source}: not a provider description: {e}"))?;
        anyhow::ensure!(
            !provider.signing_keys.is_empty(),
            "{source} publishes no signing_keys: its answers are not signed"
        );
        (provider.signing_keys, source)
    };
    let response = http.get(&args.url).send().await?;
    let status = response.status();
    let header = response
        .headers()
        .get(sign::HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.bytes().await?;
    anyhow::ensure!(status.is_success(), "{}: answered {status}", args.url);
    let Some(header) = header else {
        anyhow::bail!(
            "{}: the answer carries no {} header",
            args.url,
            sign::HEADER
        );
    };
    let verified = sign::verify(&header, &body, &keys, sign::unix_now())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_secs(verified.expires);
    println!(
        "{}: signed by key {} (from {from}), {} bytes, valid until {}",
        args.url,
        verified.kid,
        body.len(),
        humantime::format_rfc3339_seconds(expires)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_read_in_both_forms() {
        for text in ["ab12=AAAA=", "kid=ab12 public_key=AAAA="] {
            let key = super::parse_key(text).unwrap();
            assert_eq!(
                (key.kid.as_str(), key.public_key.as_str()),
                ("ab12", "AAAA=")
            );
        }
        assert!(super::parse_key("ab12").is_err());
        assert!(super::parse_key("=AAAA").is_err());
    }
}
