//! The examples every command's `--help` ends with, in one table, attached
//! to the command tree when it is built.

use clap::Command;

/// (command path, examples). Every leaf command has an entry (a test
/// checks it).
const EXAMPLES: &[(&[&str], &str)] = &[
    (
        &["serve"],
        "menshen serve --config examples/menshen.toml
  menshen serve --database-url postgres://menshen:PASSWORD@db/menshen --config /etc/menshen/menshen.toml \\
      --signing-key-file /etc/menshen/signing.key --ca-cert ca.crt --ca-key ca.key --metrics-listen 0.0.0.0:9090",
    ),
    (
        &["check-config"],
        "menshen check-config /etc/menshen/menshen.toml",
    ),
    (
        &["import"],
        "menshen import eip-service.json --provider provider.json -o menshen.toml
  menshen import eip-service.json --domain vpn.example.org --api-uri https://api.vpn.example.org:4430",
    ),
    (
        &["probe"],
        "menshen probe --database-url postgres://menshen:PASSWORD@db/menshen
  menshen probe --once --probe-timeout 3s --data-dir ./menshen-data
  menshen probe --once --json --probe-failures 1",
    ),
    (
        &["verify"],
        "menshen verify https://api.example.org/api/5/gateways
  menshen verify https://api.example.org/provider.json --key 9d9e90921c39b036=BASE64
  menshen verify https://api.example.org/api/5/bridges --provider provider.json --ca-cert ca.crt",
    ),
    (&["location", "list"], "menshen location list --json"),
    (
        &["location", "create"],
        "menshen location create paris --name Paris --country FR --lat 48.86 --lon 2.35 --timezone 1
  menshen location create --json paris.json",
    ),
    (
        &["location", "update"],
        "menshen location update paris --name \"Paris (FR)\"",
    ),
    (&["location", "delete"], "menshen location delete paris"),
    (
        &["gateway", "list"],
        "menshen gateway list
  menshen gateway list --json",
    ),
    (
        &["gateway", "create"],
        "menshen gateway create --host gw1.example.org --ip 192.0.2.10 --location paris --port 1194 --transport udp",
    ),
    (&["gateway", "delete"], "menshen gateway delete gw1.example.org"),
    (
        &["gateway", "set"],
        "menshen gateway set gw1.example.org --maintenance on
  menshen gateway set gw1.example.org --experimental default --no-bucket
  menshen gateway set gw1.example.org --blocked-in IR,RU
  menshen gateway set gw1.example.org --not-blocked",
    ),
    (&["bridge", "list"], "menshen bridge list --json"),
    (
        &["bridge", "create"],
        "menshen bridge create --host br1.example.org --ip 192.0.2.20 --location paris --port 443 \\
      --transport tcp --type obfs4 --option cert=CERT --option iatMode=0",
    ),
    (&["bridge", "delete"], "menshen bridge delete br1.example.org"),
    (
        &["bridge", "set"],
        "menshen bridge set br1.example.org --bucket friends
  menshen bridge set br1.example.org --maintenance off --default-bucket
  menshen bridge set br1.example.org --blocked-in CN,IR",
    ),
    (
        &["agent", "create"],
        "menshen agent create gw-paris --ttl 365d > gw-paris.token",
    ),
    (
        &["agent", "reissue"],
        "menshen agent reissue gw-paris --signing-key-file new.key --signing-key-file old.key --keep-old-token",
    ),
    (&["agent", "revoke"], "menshen agent revoke gw-paris"),
    (&["agent", "list"], "menshen agent list --json"),
    (
        &["invite", "create"],
        "menshen invite create --bucket friends --count 10 --expires 30d > invites.txt",
    ),
    (&["invite", "list"], "menshen invite list --json"),
    (
        &["invite", "delete"],
        "menshen invite delete --id 5f3a9c
  menshen invite delete --bucket friends",
    ),
    (
        &["admin", "token"],
        "menshen admin token --subject alice --role admin --ttl 12h
  menshen admin token --subject grafana --role viewer --ttl 30d",
    ),
    (
        &["admin", "revoke"],
        "menshen admin revoke 3f2a9c0e8b7d4e1fa6b5c4d3e2f1a0b9
  menshen admin revoke --subject alice",
    ),
    (&["admin", "list"], "menshen admin list --json"),
];

/// `command` with every entry of [`EXAMPLES`] as its subcommands' closing
/// help.
pub fn attach(mut command: Command) -> Command {
    for (path, text) in EXAMPLES {
        let label = if text.lines().count() > 1 {
            "Examples:"
        } else {
            "Example:"
        };
        let help = format!("{label}\n  {text}");
        command = at(command, path, move |c| {
            let help = match c.get_after_help() {
                Some(existing) => format!("{existing}\n\n{help}"),
                None => help,
            };
            c.after_help(help)
        });
    }
    command
}

/// `command` with `change` applied to the subcommand at `path`.
fn at(command: Command, path: &[&str], change: impl FnOnce(Command) -> Command) -> Command {
    match path.split_first() {
        None => change(command),
        Some((first, rest)) => {
            let first = first.to_string();
            command.mut_subcommand(first, |c| at(c, rest, change))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Every command a user can run, as its path.
    fn leaves(command: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let subs: Vec<_> = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push(path);
            return;
        }
        for sub in subs {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            leaves(sub, p, out);
        }
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        let mut command = super::attach(crate::cli::Cli::command());
        command.build();
        let mut all = Vec::new();
        leaves(&command, Vec::new(), &mut all);
        assert!(all.len() >= 22, "{all:?}");
        for path in all {
            let mut c = &command;
            for name in &path {
                c = c.find_subcommand(name).unwrap();
            }
            let help = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Example"),
                "menshen {} --help has no example",
                path.join(" ")
            );
            // Every example runs this command.
            let invocation = format!("menshen {}", path.join(" "));
            assert!(help.contains(&invocation), "{invocation}: {help}");
        }
    }

    /// Words of a shell line: spaces split, double quotes group, a `>`
    /// redirection ends it.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                '>' if !quoted => break,
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
        out
    }

    #[test]
    fn every_example_is_a_valid_command_line() {
        for (_, text) in super::EXAMPLES {
            for line in text.replace("\\\n", " ").lines() {
                let args = words(line.trim());
                crate::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
    }
}
