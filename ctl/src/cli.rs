//! The `pylonctl` command line: one clap enum with a variant per command group. The
//! operator commands (status, edges, apps, shards, entry, routes; users, tokens, login,
//! logout, whoami, audit; piles, records, charge; stations, tariffs, accounts, reports,
//! keys; guard, top) live in [`crate::commands`] and are flattened in beside `ykc` and
//! `completions`.

use std::io::{self, Write};

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::commands::backup::{self, BackupCommand};
use crate::commands::certs::{self, CertsCommand};
use crate::commands::ykc::{self, YkcCommand};
use crate::commands::{self, OpsCommand};

const LONG_ABOUT: &str = "\
pylonctl is the operator's tool for the Pylon EV-charger platform.

It asks a running control plane (pylon-control) how the platform is doing: which edges
and app instances are registered, how chargers are split into shards, which edge a
charger is sent to, and how the route table changes. It drains edges for maintenance.
It manages who operates the platform: users and their roles (viewer, operator, finance,
admin), their API tokens, logging in for a session token, and the audit log of every
operator action with the check of its hash chain.
Through the app service (pylon-app), it runs the charging business: registers chargers
(piles), shows their guns and connection, sets up the 3DES keys of piles that encrypt
their frames, starts and stops charges, and reads the transaction records; and its
revenue side: stations, time-of-use tariffs, drivers'
accounts with their wallets, cards and VINs, the ledger, and the revenue reports. It
sends a station's offline cards to its connected piles, and rotates the keys that seal
the stored card numbers and VINs.
Through an edge's admin API (pylon-edge), it shows the edge's SYN-flood guard and blocks
or unblocks sources, and watches edges live (top: sessions, connections per executor,
heartbeat and frame rates, the kernel's eBPF counts).
Offline, it speaks the YKC V1.6 charger protocol: paste a frame captured from a charger
to see what it says, or build a frame from JSON to send to one. Also offline, it makes
and rotates the cluster's TLS certificates (certs): the cluster CA and one certificate
per service, for the services' --cluster-ca, --cluster-cert and --cluster-key.
On the machine that holds them, it backs up and restores the registry, the store and
the key files (backup), encrypted, checksummed and copied to several repositories.

The control plane is found at --endpoint, else PYLON_ENDPOINT, else `endpoint` in the
config file (~/.config/pylon/pylonctl.toml), else http://127.0.0.1:7400. The app
service (for piles, records, charge, stations, tariffs, accounts, reports and keys) is
found at --app-endpoint, else PYLON_APP_ENDPOINT, else `app_endpoint` in the config
file, else through the control plane's address above (it forwards each call to the app
instance that can answer it).
With cluster TLS on, the control plane, the app service and the edges' admin APIs serve
HTTPS: give https:// URLs and the cluster CA's certificate to check them against, with
--ca, else PYLON_CA, else `ca` in the config file (https needs it). The control plane's
route stream (routes watch) is then mutual TLS and also needs a client certificate of
the cluster CA and its key: --cert and --key, else PYLON_CERT and PYLON_KEY, else `cert`
and `key` in the config file (both or neither; make one with `pylonctl certs issue --dir
DIR operator-NAME --dns operator-NAME`). Over HTTPS it is shown too, where it is
optional.
An edge's admin API (for guard and top) is found at --edge-admin, else PYLON_EDGE_ADMIN, else
`edge_admin` in the config file, else http://127.0.0.1:9100; it takes no token (top
takes --edge-admin once per edge, for several).
Admin commands, and all of the app service's commands, need a token: --token,
PYLON_TOKEN, or `token = \"...\"` in the config file. It is a session token from
`pylonctl login`, an API token from `pylonctl tokens create`, or, until the first admin
user exists, the control plane's bootstrap admin token; its role must allow the command
(users, tokens and audit need admin). Every operator command prints a table, or the
server's JSON with -o json.

Examples:
  pylonctl status
  pylonctl edges list
  pylonctl edges drain edge-3
  pylonctl apps list
  pylonctl shards show --pile 32010200000001
  pylonctl entry 32010200000001 --transport tls
  pylonctl routes watch --count 5 --endpoint http://10.0.0.5:7400
  pylonctl users create ana --role operator
  pylonctl login --user ana
  pylonctl tokens create --user ana --name grafana --role viewer
  pylonctl audit verify
  pylonctl piles add --range 32010200000001 100
  pylonctl piles show 32010200000001
  pylonctl piles keys rotate 32010200000001
  pylonctl charge start 32010200000001 --gun 1 --account 7
  pylonctl charge show 32010200000001012405010800000001
  pylonctl records list 32010200000001 --from 2024-05-01 --app-endpoint http://10.0.0.7:7510
  pylonctl stations add --name 'North gate' --address '1 Main St'
  pylonctl tariffs add --name Standard --file standard.json
  pylonctl stations tariff 3 --tariff 2
  pylonctl accounts top-up 7 --amount 200 --reason 'bank transfer'
  pylonctl stations offline-cards 3
  pylonctl keys rotate
  pylonctl reports daily --from 2024-05-01 --format csv > may.csv
  pylonctl reports reconciliation
  pylonctl guard status
  pylonctl guard block 203.0.113.7 --edge-admin http://10.0.0.3:9100
  pylonctl top --edge-admin http://10.0.0.3:9100 --edge-admin http://10.0.0.4:9100
  pylonctl ykc decode '68 0D 00 01 00 03 32 01 02 00 00 00 01 01 00 F1 1A'
  pylonctl ykc encode Heartbeat '{\"pile_no\":\"32010200000001\",\"gun_no\":\"01\",\"gun_status\":0}'
  pylonctl certs init --dir /etc/pylon/certs
  pylonctl certs issue --dir /etc/pylon/certs control-1 --dns ctl1.pylon.internal --ip 10.0.0.5
  pylonctl certs rotate --dir /etc/pylon/certs control-1
  pylonctl backup create --config /etc/pylon/backup.toml
  pylonctl backup restore latest --only store --force
  pylonctl status --endpoint https://10.0.0.5:7400 --ca /etc/pylon/certs/ca.pem
  pylonctl certs issue --dir /etc/pylon/certs operator-ana --dns operator-ana
  pylonctl routes watch --endpoint https://10.0.0.5:7400 --ca /etc/pylon/certs/ca.pem \\
      --cert /etc/pylon/certs/operator-ana.pem --key /etc/pylon/certs/operator-ana.key
  pylonctl completions bash > /etc/bash_completion.d/pylonctl

Exit status:
  0  success
  1  any other error (e.g. the server answered with an error, such as a pile that is not
     connected, a refused start, token or password; a reconciliation that does not
     balance; a pile that did not store the offline cards sent to it; or an audit log
     whose hash chain is broken)
  2  invalid input: a frame, JSON, frame type, pile or trade number, amount, price,
     tariff, time, IPv4 address or config file; also a request the server refused as
     invalid (HTTP 400); a password missing from stdin, or typed differently twice; an
     https:// endpoint without the cluster CA (--ca) or a CA file that cannot be read;
     --cert without --key or the other way round, a client certificate or key that
     cannot be read or is not the cluster CA's; routes watch over TLS without a client
     certificate; for certs, a name, file or folder that cannot be used, or files that
     exist already
  3  the control plane could not be reached (connection refused, timed out, unknown host);
     for the app service's commands, the app service; for guard, the edge; for top,
     every edge, at every refresh of --count";

#[derive(Debug, Parser)]
#[command(
    name = "pylonctl",
    version,
    about = "Operate the Pylon EV-charger platform",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Ops(OpsCommand),
    /// Make and rotate the cluster's TLS certificates (files only, no server needed).
    #[command(subcommand, long_about = certs::CERTS_ABOUT)]
    Certs(CertsCommand),
    /// Back up and restore the registry, the store and the key files (on the machine
    /// that holds them).
    #[command(subcommand, long_about = backup::BACKUP_ABOUT)]
    Backup(BackupCommand),
    /// Decode, encode and list frames of the YKC V1.6 charger protocol.
    #[command(
        subcommand,
        long_about = "\
Decode, encode and list frames of the YKC V1.6 charger protocol (云快充), offline.

Examples:
  pylonctl ykc types
  pylonctl ykc decode '68 0D 00 01 00 03 32 01 02 00 00 00 01 01 00 F1 1A'
  pylonctl ykc encode RemoteStop '{\"pile_no\":\"32010200000001\",\"gun_no\":\"01\"}'"
    )]
    Ykc(YkcCommand),
    /// Print a shell completion script to stdout.
    #[command(long_about = "\
Print a shell completion script to stdout.

Examples:
  pylonctl completions bash > ~/.local/share/bash-completion/completions/pylonctl
  pylonctl completions zsh > \"${fpath[1]}/_pylonctl\"
  pylonctl completions fish > ~/.config/fish/completions/pylonctl.fish")]
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

/// Why a command failed, which decides its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The input (a frame, JSON, a frame type) is not valid: exit status 2.
    BadInput(String),
    /// Anything else, e.g. stdout could not be written: exit status 1.
    Other(anyhow::Error),
    /// The control plane (or, for the app service's commands, the app service; for
    /// `guard`, the edge; for `top`, every edge) could not be reached at all (refused,
    /// timed out, unknown host): exit status 3.
    Unreachable(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 2,
            Failure::Other(_) => 1,
            Failure::Unreachable(_) => 3,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadInput(msg) | Failure::Unreachable(msg) => f.write_str(msg),
            Failure::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Other(e.into())
    }
}

/// Runs one parsed command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    match cli.command {
        Command::Ops(cmd) => commands::run(cmd, &|key| std::env::var(key).ok(), out),
        Command::Certs(cmd) => certs::run(cmd, out),
        Command::Backup(cmd) => backup::run(cmd, out),
        Command::Ykc(cmd) => ykc::run(cmd, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pylonctl", out);
            Ok(())
        }
    }
}

/// The whole program: parse the arguments, run, report and pick the exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Output piped into `head` and the like: not an error.
        Err(Failure::Other(e))
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            std::process::ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_name_the_subcommands() {
        let cli = Cli::try_parse_from(["pylonctl", "completions", "bash"]).unwrap();
        let mut out = Vec::new();
        run(cli, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("pylonctl") && script.contains("decode"));
        assert!(script.contains("undrain") && script.contains("--grpc-endpoint"));
        assert!(script.contains("records") && script.contains("--app-endpoint"));
        assert!(script.contains("tariffs") && script.contains("card-remove"));
        assert!(script.contains("reconciliation") && script.contains("--utc-offset-minutes"));
        assert!(script.contains("offline-cards") && script.contains("rotate"));
        assert!(script.contains("unblock") && script.contains("--edge-admin"));
        assert!(script.contains("top") && script.contains("--interval"));
        assert!(script.contains("users") && script.contains("--password-stdin"));
        assert!(script.contains("--key-stdin") && script.contains("--padding"));
        assert!(script.contains("tokens") && script.contains("--expires-in-days"));
        assert!(script.contains("whoami") && script.contains("verify"));
        assert!(script.contains("certs") && script.contains("--dns") && script.contains("--ca"));
    }

    #[test]
    fn exit_statuses_match_the_help() {
        assert_eq!(Failure::BadInput(String::new()).exit_code(), 2);
        assert_eq!(Failure::Other(anyhow::anyhow!("x")).exit_code(), 1);
        assert_eq!(Failure::Unreachable(String::new()).exit_code(), 3);
        assert!(LONG_ABOUT.contains("3  the control plane could not be reached"));
    }

    #[test]
    fn parses_ykc_commands() {
        let cli =
            Cli::try_parse_from(["pylonctl", "ykc", "encode", "0x36", "{}", "--seq", "7"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ykc(YkcCommand::Encode { seq: 7, .. })
        ));
        assert!(Cli::try_parse_from(["pylonctl", "ykc", "decode"]).is_err());
    }
}
