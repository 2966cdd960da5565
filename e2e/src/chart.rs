//! Helm charts as the chart tests see them: rendered with `helm template`,
//! linted, and validated against Kubernetes' schemas with
//! `kubernetes-validate`, offline. Manifests are handled as text (a YAML
//! round trip would change what helm wrote).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::tools::repo;

/// A chart of this repository, rendered as `release` in `namespace`.
pub struct Chart {
    pub path: PathBuf,
    pub release: &'static str,
    pub namespace: &'static str,
}

impl Chart {
    /// `charts/NAME`.
    pub fn new(name: &str, release: &'static str, namespace: &'static str) -> Chart {
        Chart {
            path: repo().join("charts").join(name),
            release,
            namespace,
        }
    }

    /// `helm template` with `values` files and `args`; `Err` with helm's
    /// message when it refuses.
    pub fn template(&self, helm: &Path, values: &[&Path], args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(helm);
        command
            .args(["template", self.release])
            .arg(&self.path)
            .args(["--namespace", self.namespace]);
        for v in values {
            command.arg("--values").arg(v);
        }
        command.args(args);
        let output = output(&mut command);
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).expect("utf-8"))
        } else {
            Err(text(&output))
        }
    }

    /// `helm lint --strict` with `values`; `Err` with its output.
    pub fn lint(&self, helm: &Path, values: Option<&Path>) -> Result<(), String> {
        let mut command = Command::new(helm);
        command.args(["lint", "--strict"]).arg(&self.path);
        if let Some(v) = values {
            command.arg("--values").arg(v);
        }
        let out = output(&mut command);
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out))
        }
    }

    /// Every `.yaml` file of the chart's folders `dirs` (e.g. `examples`, `ci`).
    pub fn values_files(&self, dirs: &[&str]) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(self.path.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// `helm lint --strict` passes with each of `values` (`None`: the
    /// chart's defaults), named in a failure by `describe`.
    pub fn lint_each(
        &self,
        helm: &Path,
        values: &[Option<PathBuf>],
        describe: impl Fn(&Option<PathBuf>) -> String,
    ) {
        for v in values {
            if let Err(e) = self.lint(helm, v.as_deref()) {
                panic!("helm lint --strict with {}:\n{e}", describe(v));
            }
        }
    }

    /// The chart's schema refuses each of `refused` (values, as YAML, and a
    /// key its message must name), each written into `dir` first.
    pub fn schema_refuses_each(&self, helm: &Path, dir: &Path, refused: &[(&str, &str)]) {
        for (i, (yaml, key)) in refused.iter().enumerate() {
            let file = dir.join(format!("bad-{i}.yaml"));
            std::fs::write(&file, yaml).unwrap();
            match self.template(helm, &[&file], &[]) {
                Ok(_) => panic!("accepted:\n{yaml}"),
                Err(message) => {
                    assert!(
                        message.contains("values don't meet the specifications of the schema"),
                        "{yaml}\nrefused, but not by the schema:\n{message}"
                    );
                    assert!(
                        message.contains(key),
                        "{yaml}\nmessage names {key}:\n{message}"
                    );
                }
            }
        }
    }

    /// What the chart renders with each of `values`, with each of `extras`
    /// more arguments, is valid for each Kubernetes version of `versions`
    /// (`None`: the latest) by `validator` (kubernetes-validate), the
    /// `custom` kinds checked for shape only.
    #[allow(clippy::too_many_arguments)]
    pub fn validate_each(
        &self,
        helm: &Path,
        validator: &Path,
        values: &[Option<PathBuf>],
        extras: &[&[&str]],
        versions: &[Option<&str>],
        custom: &[&str],
        describe: impl Fn(&Option<PathBuf>) -> String,
    ) {
        for v in values {
            let files: Vec<&Path> = v.iter().map(PathBuf::as_path).collect();
            for extra in extras {
                let manifests = self
                    .template(helm, &files, extra)
                    .unwrap_or_else(|e| panic!("helm template with {}: {e}", describe(v)));
                for version in versions {
                    if let Err(e) = validate(validator, &manifests, *version, custom) {
                        panic!(
                            "{} {extra:?}, Kubernetes {}: {e}",
                            describe(v),
                            version.unwrap_or("latest")
                        );
                    }
                }
            }
        }
    }
}

/// The oldest Kubernetes the charts support (their Chart.yaml's
/// kubeVersion), and kubernetes-validate's newest (its default).
pub const KUBERNETES_VERSIONS: &[Option<&str>] = &[Some("1.27.0"), None];

/// The two tests every chart has: it lints (`helm lint --strict`) with each
/// of `values` (named in a failure by `describe`), and what it renders with
/// each of them and each of `extras` more arguments is valid Kubernetes for
/// [`KUBERNETES_VERSIONS`], the `custom` kinds checked for shape only.
#[macro_export]
macro_rules! chart_checks {
    (
        chart: $chart:expr,
        values: $values:expr,
        describe: $describe:expr,
        extras: $extras:expr,
        custom: $custom:expr $(,)?
    ) => {
        #[test]
        fn helm_lint_strict_passes_with_default_and_example_values() {
            let Some(helm) = $crate::tools::helm() else {
                return;
            };
            $chart.lint_each(&helm, &$values, $describe);
        }

        #[test]
        fn rendered_manifests_are_valid_kubernetes() {
            let Some(helm) = $crate::tools::helm() else {
                return;
            };
            let Some(validate) =
                $crate::tools::tool("MENSHEN_KUBERNETES_VALIDATE", "kubernetes-validate")
            else {
                return;
            };
            $chart.validate_each(
                &helm,
                &validate,
                &$values,
                $extras,
                $crate::chart::KUBERNETES_VERSIONS,
                $custom,
                $describe,
            );
        }
    };
}

/// Runs `command`, failing the test when it cannot be started.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// What `output` wrote, stdout then stderr.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The documents of a `helm template` stream, as text.
pub fn documents(manifests: &str) -> Vec<&str> {
    manifests
        .split("\n---\n")
        .map(str::trim)
        .filter(|d| d.lines().any(|l| l.starts_with("kind: ")))
        .collect()
}

pub fn kind_of(doc: &str) -> &str {
    doc.lines()
        .find_map(|l| l.strip_prefix("kind: "))
        .expect("kind")
        .trim()
}

/// The `metadata.name` of a document.
pub fn name_of(doc: &str) -> &str {
    doc.lines()
        .skip_while(|l| *l != "metadata:")
        .find_map(|l| l.strip_prefix("  name: "))
        .expect("metadata.name")
        .trim()
}

/// The block scalar that follows the line `header` (e.g. `  menshen.toml: |`),
/// without its indentation.
pub fn block_after(doc: &str, header: &str) -> Option<String> {
    let mut lines = doc.lines().skip_while(|l| l.trim_end() != header);
    lines.next()?;
    let indent = header.len() - header.trim_start().len() + 2;
    let mut out = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    Some(out)
}

/// The one document of `kind`; fails unless there is exactly one.
pub fn only<'a>(manifests: &'a str, kind: &str) -> &'a str {
    let docs: Vec<&str> = documents(manifests)
        .into_iter()
        .filter(|d| kind_of(d) == kind)
        .collect();
    assert_eq!(docs.len(), 1, "one {kind} expected in:\n{manifests}");
    docs[0]
}

/// Validates `manifests` with `kubernetes-validate --strict` for
/// Kubernetes `version` (None: its newest); kinds in `custom` (custom
/// resources, which no schema describes) may be passed over, everything
/// else must be checked. `Err` says what failed.
pub fn validate(
    validate: &Path,
    manifests: &str,
    version: Option<&str>,
    custom: &[&str],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    let docs = documents(manifests);
    let core = docs
        .iter()
        .filter(|d| !custom.contains(&kind_of(d)))
        .count();
    let mut command = Command::new(validate);
    command.arg("--strict");
    if let Some(v) = version {
        command.args(["--kubernetes-version", v]);
    }
    let out = output(command.arg(&file));
    let said = text(&out);
    if !out.status.success() {
        return Err(said);
    }
    let passed = said
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    if passed != core {
        return Err(format!("{passed} of {core} objects checked:\n{said}"));
    }
    for line in said.lines().filter(|l| l.starts_with("WARN")) {
        if !custom
            .iter()
            .any(|k| line.contains(&format!("for kind {k} with")))
        {
            return Err(format!("unexpected warning {line}"));
        }
    }
    Ok(())
}
