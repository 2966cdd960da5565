//! `menshen pki ...`: a provider's key material (CAs and the signing key),
//! and the gateways' server certificates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Invalid;
use super::exit::OrInvalid as _;
use crate::pki::init::{Files, Material};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Make a provider's key material, once: the client CA (signs client
    /// certificates; menshen holds its key), the provider CA (the gateways'
    /// server certificates chain to it; clients get its certificate in
    /// `<ca>`), and the key that signs agent and admin tokens.
    ///
    /// Without --secret, all five files go into --out: signing.key, ca.crt,
    /// ca.key, provider-ca.crt, provider-ca.key (for `menshen serve
    /// --signing-key-file --ca-cert --ca-key --provider-ca-cert`).
    ///
    /// With --secret, the four files menshen reads are printed as a
    /// Kubernetes Secret (the one the menshen Helm chart mounts), and only
    /// the provider CA (provider-ca.crt, provider-ca.key) goes into --out:
    /// menshen never needs that key; keep it offline, with whoever signs
    /// the gateways' server certificates.
    #[command(after_help = PKI_INIT_HELP)]
    Init(InitArgs),
    /// Issue a gateway's OpenVPN server certificate, signed by the provider
    /// CA: ECDSA P-256, CN and subjectAltName HOST (and --ip), extended key
    /// usage serverAuth (clients ask for `remote-cert-tls server`).
    ///
    /// With --out, writes HOST.crt and HOST.key there; with --secret, prints
    /// them as the Secret the gateway chart mounts (type kubernetes.io/tls:
    /// tls.crt, tls.key, and ca.crt = --client-ca, the CA that signs client
    /// certificates, which OpenVPN verifies clients against).
    #[command(name = "gateway-cert", after_help = PKI_GATEWAY_CERT_HELP)]
    GatewayCert(GatewayCertArgs),
    /// Make an Ed25519 key that signs client answers (`serve
    /// --list-key-file`): FILE gets the base64 of its seed (mode 0600); its
    /// key id and public key are printed. An existing FILE is never
    /// replaced.
    #[command(name = "list-key", after_help = PKI_LIST_KEY_HELP)]
    ListKey {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

const PKI_LIST_KEY_HELP: &str = "Examples:
  menshen pki list-key --out /etc/menshen/lists.key
  menshen serve --list-key-file /etc/menshen/lists.key ...
  # rotation: publish the new key beside the old one, then let it sign
  menshen pki list-key --out /etc/menshen/lists-2.key
  menshen serve --list-key-file /etc/menshen/lists.key --list-key-file /etc/menshen/lists-2.key ...
  menshen serve --list-key-file /etc/menshen/lists-2.key --list-key-file /etc/menshen/lists.key ...
  menshen serve --list-key-file /etc/menshen/lists-2.key ...";

// The commands' help is their variant's, above.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write into (made if missing); see above for which
    /// files.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace files that exist in --out (their CAs and key are then
    /// lost: clients, gateways and tokens made with them stop working).
    #[arg(long)]
    force: bool,
    /// Print a Secret of this name on stdout, with keys signing.key,
    /// ca.crt, ca.key and provider-ca.crt.
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// The Secret's namespace.
    #[arg(long, value_name = "NS", requires = "secret")]
    namespace: Option<String>,
    /// Names the CAs: "NAME client CA", "NAME provider CA" (e.g. the
    /// provider's domain).
    #[arg(long, default_value = "menshen")]
    name: String,
}

#[derive(Debug, Args)]
pub struct GatewayCertArgs {
    /// The gateway's host name (or IP address), as clients reach it.
    host: String,
    /// The provider CA's certificate (`pki init --out`'s provider-ca.crt).
    #[arg(long, value_name = "FILE")]
    ca_cert: PathBuf,
    /// The provider CA's key (`pki init --out`'s provider-ca.key).
    #[arg(long, value_name = "FILE")]
    ca_key: PathBuf,
    /// Further IP addresses for the subjectAltName (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<std::net::IpAddr>,
    /// How long the certificate is valid (at most as long as the CA).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "730d")]
    validity: Duration,
    /// Folder to write HOST.crt and HOST.key into (made if missing).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "secret",
        conflicts_with = "secret"
    )]
    out: Option<PathBuf>,
    /// Print a Secret of this name on stdout instead of writing files.
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// The Secret's namespace.
    #[arg(long, value_name = "NS", requires = "secret")]
    namespace: Option<String>,
    /// The client CA's certificate (`pki init`'s ca.crt), put into the
    /// Secret as ca.crt. Give it twice (old and new) while the client CA
    /// is rotated: ca.crt then holds both, and OpenVPN accepts clients
    /// of either.
    #[arg(long = "client-ca", value_name = "FILE", requires = "secret")]
    client_ca: Vec<PathBuf>,
    /// Replace HOST.crt and HOST.key in --out.
    #[arg(long)]
    force: bool,
}

const PKI_GATEWAY_CERT_HELP: &str = "Examples:
  menshen pki gateway-cert gw1.example.org --ca-cert provider-ca/provider-ca.crt \\
      --ca-key provider-ca/provider-ca.key --ip 192.0.2.10 --out ./gw1
  menshen pki gateway-cert gw1.example.org --ca-cert provider-ca/provider-ca.crt \\
      --ca-key provider-ca/provider-ca.key --client-ca ca.crt \\
      --secret gw1-openvpn-tls --namespace vpn | kubectl apply -f -";

const PKI_INIT_HELP: &str = "Examples:
  menshen pki init --out /etc/menshen/pki --name example.org
  menshen serve --signing-key-file /etc/menshen/pki/signing.key \\
      --ca-cert /etc/menshen/pki/ca.crt --ca-key /etc/menshen/pki/ca.key \\
      --provider-ca-cert /etc/menshen/pki/provider-ca.crt ...

  menshen pki init --secret menshen-pki --namespace vpn --out ./provider-ca > menshen-pki.yaml
  kubectl apply -f menshen-pki.yaml    # then: helm install ... (pki.existingSecret: menshen-pki)";

pub fn run(command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init(args) => init(args),
        PkiCommand::GatewayCert(args) => gateway_cert(args),
        PkiCommand::ListKey { out } => list_key(&out),
    }
}

fn list_key(out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists() {
        return Err(Invalid::err(format!(
            "{} exists; a key is never replaced (name another file)",
            out.display()
        )));
    }
    let contents = crate::sign::ListKey::generate_file_contents();
    crate::pki::generated::write_new(out, contents.as_bytes(), 0o600)?;
    let key = crate::sign::ListKey::read(out)?;
    use base64::Engine as _;
    println!(
        "kid={} public_key={}",
        key.kid,
        base64::engine::general_purpose::STANDARD.encode(key.public_key())
    );
    Ok(())
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let InitArgs {
        out,
        force,
        secret,
        namespace,
        name,
    } = args;
    if name.trim().is_empty() || name.len() > 128 {
        return Err(Invalid::err("--name must be 1-128 characters"));
    }
    let material = Material::generate(name.trim(), time::OffsetDateTime::now_utc())?;
    // Checked before anything is written.
    let manifest = secret
        .as_deref()
        .map(|secret| material.secret_manifest(secret, namespace.as_deref()))
        .transpose()
        .or_invalid()?;
    let files = if manifest.is_some() {
        Files::ProviderCa
    } else {
        Files::All
    };
    // Files there already: refused (status 1), not invalid.
    let written = material.write(&out, files, force)?;
    if let Some(manifest) = manifest {
        print!("{manifest}");
    }
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    if files == Files::ProviderCa {
        eprintln!(
            "the provider CA's key stays out of the Secret: keep {} offline",
            out.join(crate::pki::init::PROVIDER_CA_KEY).display()
        );
    }
    Ok(())
}

fn gateway_cert(args: GatewayCertArgs) -> anyhow::Result<()> {
    let validity = time::Duration::try_from(args.validity)
        .map_err(|_| Invalid::err("--validity is too long"))?;
    let host = args.host.trim().to_owned();
    // Everything issuing checks is what was given: HOST, --validity, the
    // CA's files.
    let made = crate::pki::gateway::issue(
        &host,
        &args.ips,
        &args.ca_cert,
        &args.ca_key,
        validity,
        time::OffsetDateTime::now_utc(),
    )
    .or_invalid()?;
    if let Some(secret) = args.secret {
        let mut bundle = String::new();
        for path in &args.client_ca {
            // One CA certificate a file, as menshen's --ca-cert takes it.
            crate::pki::material::read_certificate(
                path,
                "--client-ca",
                time::OffsetDateTime::now_utc(),
            )
            .or_invalid()?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| Invalid::err(format!("--client-ca {}: {e}", path.display())))?;
            bundle.push_str(text.trim_end());
            bundle.push('\n');
        }
        let client_ca = (!args.client_ca.is_empty()).then_some(bundle);
        let manifest = made
            .secret_manifest(&secret, args.namespace.as_deref(), client_ca.as_deref())
            .or_invalid()?;
        print!("{manifest}");
    } else if let Some(out) = args.out {
        let (crt, key) = (
            out.join(format!("{host}.crt")),
            out.join(format!("{host}.key")),
        );
        if !args.force && (crt.exists() || key.exists()) {
            anyhow::bail!(
                "refusing to overwrite {} or {}; use --force to replace them",
                crt.display(),
                key.display()
            );
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for path in [&crt, &key] {
            if path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("replacing {}", path.display()))?;
            }
        }
        crate::pki::generated::write_new(&crt, made.cert_pem.as_bytes(), 0o644)?;
        crate::pki::generated::write_new(&key, made.key_pem.as_bytes(), 0o600)?;
        eprintln!("wrote {}\nwrote {}", crt.display(), key.display());
    }
    Ok(())
}
