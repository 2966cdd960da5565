//! What the tests that start the charts for real share: images built from
//! this build's binaries (`scripts/build-images.sh`), podman's settings,
//! `helm template` output made playable by Debian's podman 4.3.1, and a
//! cleanup that undoes every play, volume, container and image a test made
//! (also when it panics).
//!
//! Podman's settings are `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`
//! when set, else ones written into `target/containers/` (runc, cgroupfs,
//! no default ulimits, vfs storage under `target/containers/storage`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;
use serde_norway::Value as Yaml;

use crate::binary;
use crate::tools::{have, helm, is_root, on_path, repo, run, text};

/// `target/` (or CARGO_TARGET_DIR), and the profile the binaries were
/// built with (`debug` or `release`), from where this build's binaries are.
pub fn target_and_profile() -> (PathBuf, String) {
    let bin_dir = binary("menshen").parent().expect("bin dir").to_path_buf();
    let profile = bin_dir.file_name().unwrap().to_str().unwrap().to_owned();
    (bin_dir.parent().expect("target dir").to_path_buf(), profile)
}

/// Helm, when all a test of the charts under podman needs is here: helm,
/// podman, buildah, the programs named in `also`, and root (rootful
/// podman). Else `None`, after the note (or the failure, with
/// `MENSHEN_TEST_REQUIRE_TOOLS=1`) for the first one missing.
pub fn podman_tools(also: &[&str]) -> Option<PathBuf> {
    let helm = helm();
    let present = have("helm (MENSHEN_HELM or PATH)", helm.is_some())
        && ["podman", "buildah"]
            .iter()
            .chain(also)
            .all(|name| have(name, on_path(name).is_some()))
        && have("root (rootful podman)", is_root());
    helm.filter(|_| present)
}

/// Podman's and buildah's settings: the caller's, else ones of our own.
pub struct Containers {
    env: Vec<(String, String)>,
}

impl Containers {
    pub fn new(target: &Path) -> Containers {
        let dir = target.join("containers");
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = Vec::new();
        let conf = std::env::var("CONTAINERS_CONF").unwrap_or_else(|_| {
            let path = dir.join("containers.conf");
            std::fs::write(
                &path,
                "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 runtime = \"runc\"\n",
            )
            .unwrap();
            path.to_str().unwrap().to_owned()
        });
        env.push(("CONTAINERS_CONF".to_owned(), conf));
        let storage = std::env::var("CONTAINERS_STORAGE_CONF").unwrap_or_else(|_| {
            let path = dir.join("storage.conf");
            std::fs::write(
                &path,
                format!(
                    "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                    dir.join("storage").display(),
                    dir.join("run").display()
                ),
            )
            .unwrap();
            path.to_str().unwrap().to_owned()
        });
        env.push(("CONTAINERS_STORAGE_CONF".to_owned(), storage));
        Containers { env }
    }

    /// `program` with podman's settings in its environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    pub fn podman(&self, args: &[&str]) -> Command {
        let mut command = self.command("podman");
        command.args(args);
        command
    }

    /// Builds images with `scripts/build-images.sh` from the binaries in
    /// `target`/`profile`, tagged `tag`; with `gateway`, also the gateway
    /// tools image. Returns the images' names, as the script printed them.
    pub fn build_images(
        &self,
        target: &Path,
        profile: &str,
        tag: &str,
        gateway: bool,
    ) -> Vec<String> {
        let mut command = self.command(repo().join("scripts/build-images.sh").to_str().unwrap());
        command
            .args(["--profile", profile, "--tag", tag])
            .env("CARGO_TARGET_DIR", target);
        if gateway {
            command.arg("--gateway");
        }
        run(command).lines().map(str::to_owned).collect()
    }

    /// The size of `image` as podman reports it (e.g. "28.4 MB").
    pub fn image_size(&self, image: &str) -> String {
        run(self.podman(&["image", "inspect", "--format", "{{.Size}}", image]))
            .trim()
            .parse::<u64>()
            .map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_default()
    }

    /// The logs of the containers a `kube play` printed it started.
    pub fn logs(&self, play_output: &str) -> String {
        let mut out = String::new();
        for id in played_containers(play_output) {
            if let Ok(logs) = self.podman(&["logs", &id]).output() {
                out.push_str(&format!("--- {id}\n"));
                out.push_str(&text(&logs.stdout));
                out.push_str(&text(&logs.stderr));
            }
        }
        out
    }
}

/// Everything a test started or made, undone when dropped (also when the
/// test panics): its kube plays, the volumes podman made of their
/// ConfigMaps (which `kube down` leaves), containers, images.
pub struct Cleanup<'a> {
    pub containers: &'a Containers,
    /// Holds the kube files: removed only after `kube down` read them.
    pub work: tempfile::TempDir,
    pub kube_files: Vec<PathBuf>,
    pub volumes: Vec<String>,
    pub started: Vec<String>,
    pub images: Vec<String>,
}

impl<'a> Cleanup<'a> {
    pub fn new(containers: &'a Containers) -> Cleanup<'a> {
        Cleanup {
            containers,
            work: tempfile::tempdir().unwrap(),
            kube_files: Vec::new(),
            volumes: Vec::new(),
            started: Vec::new(),
            images: Vec::new(),
        }
    }

    /// Builds this build's images tagged `tag` (with `gateway`, the
    /// gateway tools image too), removed with the rest; the script must
    /// make just those. Returns their names.
    pub fn build_images(&mut self, tag: &str, gateway: bool) -> Vec<String> {
        let mut names = vec!["menshen", "menshen-agent"];
        if gateway {
            names.push("menshen-gateway-tools");
        }
        // Named before the build, so that what a failed build made goes too.
        self.images = names
            .iter()
            .map(|name| format!("localhost/{name}:{tag}"))
            .collect();
        let (target, profile) = target_and_profile();
        let images = self
            .containers
            .build_images(&target, &profile, tag, gateway);
        assert_eq!(images, self.images, "the images the script made");
        images
    }

    /// `podman kube play --network host` of the documents `docs`, written
    /// to `name` in the work folder. The ConfigMaps' volumes are removed
    /// with the rest. Returns what podman printed.
    pub fn play(&mut self, name: &str, docs: &[String]) -> String {
        let file = self.work.path().join(name);
        std::fs::write(&file, docs.join("---\n")).unwrap();
        for doc in docs {
            if doc.lines().any(|l| l == "kind: ConfigMap") {
                let parsed: Yaml = serde_norway::from_str(doc).unwrap();
                if let Some(n) = parsed["metadata"]["name"].as_str() {
                    self.volumes.push(n.to_owned());
                }
            }
        }
        // Registered first: a play that fails half-way leaves pods behind.
        self.kube_files.push(file.clone());
        // From the work folder: podman 4.3 builds an image itself when the
        // current folder has a subfolder named like it with a Containerfile.
        let mut command =
            self.containers
                .podman(&["kube", "play", "--network", "host", file.to_str().unwrap()]);
        command.current_dir(self.work.path());
        run(command)
    }

    /// `podman kube down` of what `play(name, …)` started.
    pub fn down(&self, name: &str) {
        let file = self.work.path().join(name);
        run(self
            .containers
            .podman(&["kube", "down", file.to_str().unwrap()]));
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let quiet = |mut command: Command| {
            let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for name in &self.started {
            quiet(self.containers.podman(&["rm", "-f", "-t", "2", name]));
        }
        for file in self.kube_files.iter().rev() {
            quiet(
                self.containers
                    .podman(&["kube", "down", file.to_str().unwrap()]),
            );
        }
        for volume in &self.volumes {
            quiet(self.containers.podman(&["volume", "rm", "-f", volume]));
        }
        for image in &self.images {
            quiet(self.containers.podman(&["rmi", "-f", image]));
        }
    }
}

/// The `--set` arguments of `helm template` that point the menshen chart at
/// this run's image `tag`, database, ports and PKI ConfigMap `pki`.
pub fn backend_sets(
    tag: &str,
    database_url: &str,
    http: u16,
    metrics: u16,
    pki: &str,
) -> Vec<String> {
    [
        format!("image.tag={tag}"),
        format!("database.external.url={database_url}"),
        format!("containerPorts.http={http}"),
        format!("containerPorts.metrics={metrics}"),
        format!("pki.existingSecret={pki}"),
    ]
    .into_iter()
    .flat_map(|set| ["--set".to_owned(), set])
    .collect()
}

/// The documents of a YAML stream, parsed (empty ones left out).
pub fn documents(stream: &str) -> Vec<Yaml> {
    raw_documents(stream)
        .iter()
        .map(|doc| serde_norway::from_str(doc).unwrap_or_else(|e| panic!("not YAML ({e}):\n{doc}")))
        .filter(|doc: &Yaml| !doc.is_null())
        .collect()
}

/// The documents of a YAML stream, as text (empty ones left out).
pub fn raw_documents(stream: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in stream.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// What `helm template` rendered, as podman 4.3.1 can play it on the
/// host's network: the Deployments' container `ports:` left out (podman
/// turns them into port mappings, which host networking refuses; on the
/// host's network they mean nothing). Edited as text: a YAML round trip
/// would change values such as `defaultMode: 0440` (octal to Kubernetes).
pub fn playable(rendered: &str) -> Vec<String> {
    raw_documents(rendered)
        .into_iter()
        .map(|doc| {
            if doc.lines().any(|l| l == "kind: Deployment") {
                without_container_ports(&doc)
            } else {
                doc
            }
        })
        .collect()
}

/// `doc` without the `ports:` lists of its containers (blocks indented
/// deeper than a top-level key).
pub fn without_container_ports(doc: &str) -> String {
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in doc.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(at) = skipping {
            if line.trim().is_empty()
                || indent > at
                || line.trim_start().starts_with("- ") && indent == at
            {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "ports:" && indent > 2 {
            skipping = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A Secret manifest's keys as a ConfigMap named `name` (podman 4.3.1
/// cannot mount Secrets); also writes each key's content into `dir`.
pub fn configmap_of_secret(secret: &str, name: &str, dir: &Path) -> String {
    let secret: Yaml = serde_norway::from_str(secret).unwrap();
    assert_eq!(secret["kind"], "Secret");
    let mut out = format!(
        "# A Secret's keys, as a ConfigMap (podman 4.3.1 cannot mount Secrets).\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
    );
    for (key, value) in secret["data"].as_mapping().unwrap() {
        let key = key.as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        let content = String::from_utf8(bytes).unwrap();
        std::fs::write(dir.join(key), &content).unwrap();
        // A JSON string is a YAML string.
        out.push_str(&format!("  {key}: {}\n", Value::String(content)));
    }
    out
}

/// A ConfigMap named `name` holding `entries` (key, content).
pub fn configmap(name: &str, entries: &[(&str, &str)]) -> String {
    let mut out = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n");
    for (key, content) in entries {
        out.push_str(&format!(
            "  {key}: {}\n",
            Value::String((*content).to_owned())
        ));
    }
    out
}

/// The ids of the containers `podman kube play` started, from what it
/// printed.
pub fn played_containers(play_output: &str) -> Vec<String> {
    // "Pod:\nID\nContainer:\nID\n..." for every pod, or "Pod:" once and
    // "Containers:" once with their ids.
    let mut ids = Vec::new();
    let mut in_containers = false;
    for line in play_output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.ends_with(':') {
            in_containers = line.starts_with("Container");
        } else if in_containers {
            ids.push(line.to_owned());
        }
    }
    ids
}

/// A process of a running container, as the kernel sees it
/// (`/proc/PID/status` and `mountinfo`), not as its manifest says.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The container's name, e.g. `…-pod-0-openvpn`.
    pub container: String,
    pub pid: u32,
    /// Whether this is the container's main process (the entrypoint).
    pub main: bool,
    pub comm: String,
    /// Real, effective, saved and filesystem ids.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter (a seccomp profile).
    pub seccomp: u8,
    /// Whether `/` is mounted read-only for it.
    pub root_read_only: bool,
}

impl Observed {
    fn read(container: &str, pid: u32, main: bool) -> Option<Observed> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status:\n{status}"))
        };
        let ids = |name: &str| -> [u32; 4] {
            let v: Vec<u32> = field(name)
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let caps = |name: &str| u64::from_str_radix(field(name), 16).unwrap();
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ...": the last mount on /.
        let root_options = mountinfo.lines().rev().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f[5].to_owned())
        })?;
        Some(Observed {
            container: container.to_owned(),
            pid,
            main,
            comm: std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()?
                .trim()
                .to_owned(),
            uid: ids("Uid"),
            gid: ids("Gid"),
            cap_eff: caps("CapEff"),
            cap_prm: caps("CapPrm"),
            cap_bnd: caps("CapBnd"),
            cap_amb: caps("CapAmb"),
            no_new_privs: field("NoNewPrivs") == "1",
            seccomp: field("Seccomp").parse().unwrap(),
            root_read_only: root_options.split(',').any(|o| o == "ro"),
        })
    }

    /// One line for a report: container, command, ids and capabilities.
    pub fn summary(&self) -> String {
        format!(
            "{} {} (pid {}{}): uid {} gid {} CapEff {:#x} CapBnd {:#x} CapAmb {:#x} NoNewPrivs {} Seccomp {} root {}",
            self.container,
            self.comm,
            self.pid,
            if self.main { ", main" } else { "" },
            self.uid[0],
            self.gid[0],
            self.cap_eff,
            self.cap_bnd,
            self.cap_amb,
            u8::from(self.no_new_privs),
            self.seccomp,
            if self.root_read_only { "ro" } else { "rw" },
        )
    }
}

impl Containers {
    /// Every process of the running container `id`: its main process and
    /// all others in its PID namespace.
    pub fn processes(&self, id: &str) -> Vec<Observed> {
        let out = run(self.podman(&["inspect", "--format", "{{.Name}} {{.State.Pid}}", id]));
        let (name, pid) = out.trim().rsplit_once(' ').expect("name and pid");
        let main: u32 = pid.parse().unwrap();
        assert_ne!(main, 0, "container {name} is not running");
        let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let own = ns(main).expect("the container's PID namespace");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if ns(pid).as_ref() == Some(&own)
                && let Some(p) = Observed::read(name, pid, pid == main)
            {
                found.push(p);
            }
        }
        assert!(
            found.iter().any(|p| p.main),
            "{name}: main process {main} not seen"
        );
        found.sort_by_key(|p| p.pid);
        found
    }
}
