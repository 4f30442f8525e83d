//! Command-line parsing: turns the arguments after `argv[0]` into an
//! `Invocation` (which command, plus config overrides keyed by config key),
//! and owns every help text.
//!
//! The command line is a contract packagers rely on:
//! `hearth [serve] [OPTIONS]`, the `user`, `token`, `reports`, `backup`, `media`
//! and `config` admin commands, `help`, `--help` and `--version`. Every config key of
//! `config::KEYS` is an option, `--<key-with-dashes> VALUE` or
//! `--<key-with-dashes>=VALUE`, accepted by every command.
//!
//! **Architecture Invariant:** no I/O. This module does not read files,
//! standard input or the environment, and prints nothing: it returns text
//! and values, and `main` acts on them. Config values are passed through as
//! text; `config::load` interprets and validates them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use crate::config;

/// Exit status after a clean shutdown or a successful command.
pub const EXIT_OK: i32 = 0;
/// Exit status after a failure at run time (database, network, I/O).
pub const EXIT_RUNTIME_FAILURE: i32 = 1;
/// Exit status for a bad command line or a bad configuration.
pub const EXIT_USAGE: i32 = 2;

/// Fewest registrations a token created with `--uses` may allow.
pub const TOKEN_USES_MIN: u32 = 1;
/// Shortest validity, in days, of `token create --expires-in`.
pub const TOKEN_EXPIRES_IN_DAYS_MIN: u32 = 1;
/// Longest validity, in days, of `token create --expires-in` (about ten
/// years).
pub const TOKEN_EXPIRES_IN_DAYS_MAX: u32 = 3650;
/// Largest `media purge --older-than` (about a century).
pub const MEDIA_PURGE_DAYS_MAX: u32 = 36_500;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the homeserver.
    Serve,
    /// Print this help text and exit 0.
    Help(String),
    /// Print `version()` and exit 0.
    Version,
    /// Print `config::example()` and exit 0.
    ConfigExample,
    UserAdd {
        name: String,
        password_stdin: bool,
        admin: bool,
    },
    UserList,
    UserResetPassword {
        name: String,
        password_stdin: bool,
    },
    UserDeactivate {
        name: String,
    },
    TokenCreate {
        uses: Option<u32>,
        expires_in_days: Option<u32>,
        token: Option<String>,
    },
    TokenList,
    TokenRevoke {
        token: String,
    },
    /// Reported content: the open reports, or all with `--all`.
    ReportsList {
        all: bool,
    },
    /// Marks a report resolved.
    ReportsResolve {
        id: i64,
    },
    Backup {
        path: PathBuf,
    },
    /// A new signing key; the old one is kept as expired (issue 15).
    KeyRotate,
    /// Media (issue 6): counts and sizes.
    MediaStats,
    /// Removes media older than `older_than_days` (remote only: cached
    /// copies of other servers' media), then unreferenced content; without
    /// an age, only lapsed `/create` IDs, abandoned uploads and unreferenced
    /// content.
    MediaPurge {
        older_than_days: Option<u32>,
        remote_only: bool,
    },
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    /// Config overrides as given, keyed by config key (`server_name` for
    /// `--server-name`), including `config` for `--config`.
    pub flags: BTreeMap<String, String>,
}

/// A command line that cannot be understood. `main` prints it with a hint to
/// run `hearth --help` and exits with `EXIT_USAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The `--version` text.
pub fn version() -> String {
    format!("hearth {}", env!("CARGO_PKG_VERSION"))
}

/// One command: its words, positional arguments and own options, and the
/// text of its help.
struct CommandSpec {
    path: &'static [&'static str],
    /// Names of the positional arguments, all required.
    args: &'static [&'static str],
    /// Options only this command takes, e.g. `admin` for `--admin`.
    options: &'static [&'static str],
    summary: &'static str,
    /// The rest of the help text: what it does and what its options mean.
    details: &'static str,
}

/// Options that take no value.
const SWITCHES: &[&str] = &["password-stdin", "admin", "remote-only", "all"];
/// Command options that take a value.
const VALUE_OPTIONS: &[&str] = &["uses", "expires-in", "token", "older-than"];

const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        path: &["serve"],
        args: &[],
        options: &[],
        summary: "Run the homeserver (the default when no command is given).",
        details: "\
Runs until SIGTERM or SIGINT, then shuts down cleanly and exits 0.
Options override the config file; each can also be set by its environment
variable. Precedence: option > environment > config file > default.",
    },
    CommandSpec {
        path: &["user", "add"],
        args: &["NAME"],
        options: &["password-stdin", "admin"],
        summary: "Create a local account.",
        details: "\
NAME is the localpart of the new user ID: alice for @alice:SERVER_NAME.

  --password-stdin   Read the password from the first line of standard input.
  --admin            Make the account a server administrator.",
    },
    CommandSpec {
        path: &["user", "list"],
        args: &[],
        options: &[],
        summary: "List local accounts.",
        details: "",
    },
    CommandSpec {
        path: &["user", "reset-password"],
        args: &["NAME"],
        options: &["password-stdin"],
        summary: "Set a new password for a local account.",
        details: "\
NAME is the localpart of the user ID: alice for @alice:SERVER_NAME.

  --password-stdin   Read the new password from the first line of standard
                     input.",
    },
    CommandSpec {
        path: &["user", "deactivate"],
        args: &["NAME"],
        options: &[],
        summary: "Deactivate a local account so it can no longer log in.",
        details: "\
NAME is the localpart of the user ID: alice for @alice:SERVER_NAME.",
    },
    CommandSpec {
        path: &["token", "create"],
        args: &[],
        options: &["uses", "expires-in", "token"],
        summary: "Create a registration token (for registration = \"token\").",
        details: "  --uses N           How many accounts the token may register, at least 1.
                     Default: unlimited.
  --expires-in DAYS  Days until the token expires, 1 to 3650.
                     Default: never.
  --token TOKEN      The token text, 1 to 64 of A-Z a-z 0-9 . _ ~ -.
                     Default: a random token.",
    },
    CommandSpec {
        path: &["token", "list"],
        args: &[],
        options: &[],
        summary: "List registration tokens.",
        details: "",
    },
    CommandSpec {
        path: &["token", "revoke"],
        args: &["TOKEN"],
        options: &[],
        summary: "Revoke a registration token so it can no longer be used.",
        details: "",
    },
    CommandSpec {
        path: &["reports", "list"],
        args: &[],
        options: &["all"],
        summary: "List reported events, rooms and users.",
        details: "\
One line a report: its ID, when it was received, who reported what, the
reason, the score and when it was resolved.

  --all              Resolved reports too. Default: open ones only.",
    },
    CommandSpec {
        path: &["reports", "resolve"],
        args: &["ID"],
        options: &[],
        summary: "Mark a report resolved.",
        details: "\
ID is the number `hearth reports list` shows.",
    },
    CommandSpec {
        path: &["backup"],
        args: &["FILE"],
        options: &[],
        summary: "Write a consistent copy of the database to FILE.",
        details: "\
Uses SQLite's online backup, so the server may keep running meanwhile.",
    },
    CommandSpec {
        path: &["key", "rotate"],
        args: &[],
        options: &[],
        summary: "Make a new server signing key; the old one is kept as expired.",
        details: "\
Other servers learn the new key from /_matrix/key/v2/server; the old one
stays listed in old_verify_keys (with its expired_ts) so that what it
signed can still be verified. A running server goes on signing with the
key it started with: restart it to use the new one.",
    },
    CommandSpec {
        path: &["media", "stats"],
        args: &[],
        options: &[],
        summary: "Show how much media is stored (uploads, distinct contents, thumbnails).",
        details: "",
    },
    CommandSpec {
        path: &["media", "purge"],
        args: &[],
        options: &["older-than", "remote-only"],
        summary: "Delete media older than DAYS days, and what nothing uses any more.",
        details: "  --older-than DAYS  Media uploaded (or, for remote media, cached) more
                     than DAYS days ago, 0 to 36500, is deleted with its
                     thumbnails. Without it no media is deleted.
  --remote-only      Delete only cached copies of other servers' media.
Unused IDs from /create that expired, abandoned uploads and stored bytes
that nothing uses any more are removed too. Freed space is reused by the
database file.",
    },
    CommandSpec {
        path: &["config", "example"],
        args: &[],
        options: &[],
        summary: "Print a commented example config file with every key and default.",
        details: "\
The same text ships as contrib/hearth.toml.",
    },
];

/// Command words that only group subcommands.
const GROUPS: &[&str] = &["user", "token", "reports", "config", "media", "key"];

fn usage_line(spec: &CommandSpec) -> String {
    let mut line = format!("hearth {}", spec.path.join(" "));
    for arg in spec.args {
        line.push(' ');
        line.push_str(arg);
    }
    for option in spec.options {
        match value_name(option) {
            Some(value) => line.push_str(&format!(" [--{option} {value}]")),
            None => line.push_str(&format!(" [--{option}]")),
        }
    }
    if spec.path == ["serve"] {
        line.push_str(" [OPTIONS]");
    }
    line
}

/// The placeholder shown after an option that takes a value; `None` for a
/// switch.
fn value_name(option: &str) -> Option<&'static str> {
    let name = match option {
        "config" => "FILE",
        "listen" => "ADDR:PORT",
        "server-name" => "NAME",
        "database" => "PATH",
        "registration" => "closed|token|open",
        "public-baseurl" => "URL",
        "well-known-server" => "HOST[:PORT]",
        "workers" => "N",
        "log-level" => "LEVEL",
        "rate-limit-per-second" => "RATE",
        "rate-limit-burst" => "N",
        "max-body-bytes" => "BYTES",
        "max-upload-bytes" => "BYTES",
        "media-quota-bytes" => "BYTES",
        "unauthenticated-media-before-ms" => "MS",
        "older-than" => "DAYS",
        "access-token-lifetime-ms" => "MS",
        "sync-timeout-max-ms" => "MS",
        "max-parked-requests" => "N",
        "max-connections" => "N",
        "presence" => "BOOL",
        "user-directory-search-all-users" => "BOOL",
        "allow-guest-access" => "BOOL",
        "turn-uris" => "URIS",
        "turn-shared-secret" => "SECRET",
        "turn-user-lifetime-ms" => "MS",
        "tls-listen" => "ADDR:PORT",
        "tls-cert" => "FILE",
        "tls-key" => "FILE",
        "trusted-proxies" => "ADDRS",
        "acme-enabled" => "BOOL",
        "acme-domains" => "NAMES",
        "acme-email" => "EMAIL",
        "acme-directory" => "URL",
        "acme-http01-listen" => "ADDR:PORT",
        "acme-ca-file" => "FILE",
        "outbound-allow-private" => "BOOL",
        "outbound-ca-file" => "FILE",
        "federation" => "BOOL",
        "federation-domain-allowlist" | "trusted-key-servers" => "NAMES",
        "federation-retry-min-ms" | "federation-retry-max-ms" => "MS",
        "remote-media-cache-bytes" => "BYTES",
        "appservice-config-files" => "FILES",
        "uses" => "N",
        "expires-in" => "DAYS",
        "token" => "TOKEN",
        _ if SWITCHES.contains(&option) => return None,
        _ => "VALUE",
    };
    Some(name)
}

const EXIT_CODES: &str = "\
Exit status:
  0  clean shutdown, or the command succeeded
  1  failure at run time (database, network, I/O)
  2  bad command line or bad configuration";

const GLOBAL_OPTIONS_NOTE: &str = "\
Global options (every command accepts them; admin commands open the same
database as `hearth serve`, so give them the same config):
  --config FILE        Config file (TOML). Environment: HEARTH_CONFIG.
                       Default: none, built-in defaults apply.
  --database PATH      Environment: HEARTH_DATABASE. Default: ./hearth.db.
  --server-name NAME   Environment: HEARTH_SERVER_NAME. Default: localhost.
  and every other option of `hearth serve` (see `hearth serve --help`).
Options may be written --key VALUE or --key=VALUE, before or after the
command.";

fn general_help() -> String {
    let mut out = format!(
        "{}: a Matrix homeserver that keeps everything in one SQLite file.\n\n\
         Usage:\n  hearth [COMMAND] [OPTIONS]\n\nCommands:\n",
        version()
    );
    for spec in COMMANDS {
        out.push_str(&format!("  {}\n      {}\n", usage_line(spec), spec.summary));
    }
    out.push_str(
        "  hearth help [COMMAND]\n      Show help for a command, as does \
         `hearth COMMAND --help`.\n  hearth --help | --version\n      Show this \
         help or the version.\n\n",
    );
    out.push_str(GLOBAL_OPTIONS_NOTE);
    out.push_str("\n\n");
    out.push_str(EXIT_CODES);
    out.push('\n');
    out
}

fn serve_help(spec: &CommandSpec) -> String {
    let mut out = format!("Usage: {}\n\n{}\n{}\n\nOptions:\n", usage_line(spec), spec.summary, spec.details);
    out.push_str(&format!(
        "  --config FILE\n      Config file (TOML) to read; see `hearth config example`.\n      \
         Environment: {}. Default: none, built-in defaults apply.\n",
        config::CONFIG_ENV
    ));
    for (key, summary) in config::KEYS {
        let option = key.replace('_', "-");
        let value = value_name(&option).unwrap_or("VALUE");
        out.push_str(&format!(
            "  --{option} {value}\n      {summary}\n      Environment: {}. Default: {}.\n",
            config::env_var(key),
            config::default_text(key).unwrap_or("none"),
        ));
    }
    out.push_str("  -h, --help\n      Show this help.\n\n");
    out.push_str(EXIT_CODES);
    out.push('\n');
    out
}

fn command_help(spec: &CommandSpec) -> String {
    if spec.path == ["serve"] {
        return serve_help(spec);
    }
    let mut out = format!("Usage: {}\n\n{}\n", usage_line(spec), spec.summary);
    if !spec.details.is_empty() {
        out.push('\n');
        out.push_str(spec.details);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(GLOBAL_OPTIONS_NOTE);
    out.push_str("\n\n");
    out.push_str(EXIT_CODES);
    out.push('\n');
    out
}

fn group_help(group: &str) -> String {
    let mut out = format!("Usage: hearth {group} SUBCOMMAND [OPTIONS]\n\nSubcommands:\n");
    for spec in COMMANDS.iter().filter(|spec| spec.path[0] == group) {
        out.push_str(&format!("  {}\n      {}\n", usage_line(spec), spec.summary));
    }
    out.push_str(&format!("\nRun `hearth {group} SUBCOMMAND --help` for details.\n\n"));
    out.push_str(GLOBAL_OPTIONS_NOTE);
    out.push_str("\n\n");
    out.push_str(EXIT_CODES);
    out.push('\n');
    out
}

/// The help text for the command named by `words` (e.g. `["user", "add"]`,
/// extra words such as arguments are ignored), or the general help for no
/// words. Unknown commands are an error.
pub fn help(words: &[&str]) -> Result<String, UsageError> {
    let Some(first) = words.first() else {
        return Ok(general_help());
    };
    if *first == "help" {
        return help(&words[1..]);
    }
    if let Some(spec) = find_command(words) {
        return Ok(command_help(spec));
    }
    if GROUPS.contains(first) {
        return Ok(group_help(first));
    }
    Err(unknown_command(first))
}

fn find_command(words: &[&str]) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|spec| words.len() >= spec.path.len() && words[..spec.path.len()] == *spec.path)
}

fn unknown_command(word: &str) -> UsageError {
    UsageError(format!(
        "unknown command \"{word}\"; commands are serve, user, token, reports, backup, media, key, config and help"
    ))
}

/// What an option name (without `--`) is.
enum OptionKind {
    /// A config override, stored under this config key.
    Config(String),
    /// A command option without a value.
    Switch(&'static str),
    /// A command option with a value.
    Value(&'static str),
}

fn classify(name: &str) -> Option<OptionKind> {
    if name == config::CONFIG_FLAG {
        return Some(OptionKind::Config(name.to_owned()));
    }
    if let Some(switch) = SWITCHES.iter().find(|switch| **switch == name) {
        return Some(OptionKind::Switch(switch));
    }
    if let Some(option) = VALUE_OPTIONS.iter().find(|option| **option == name) {
        return Some(OptionKind::Value(option));
    }
    // Config keys are spelt with dashes on the command line only.
    if name.contains('_') {
        return None;
    }
    let key = name.replace('-', "_");
    config::KEYS.iter().any(|(known, _)| *known == key).then_some(OptionKind::Config(key))
}

fn unknown_option(arg: &str, name: &str) -> UsageError {
    let dashed = name.replace('_', "-");
    let hint = if dashed != name && classify(&dashed).is_some() {
        format!("; did you mean --{dashed}?")
    } else {
        String::new()
    };
    UsageError(format!("unknown option {arg}{hint}"))
}

/// Arguments split into words and options, before the command is known.
#[derive(Default)]
struct Scan<'a> {
    words: Vec<&'a str>,
    flags: BTreeMap<String, String>,
    switches: BTreeSet<&'static str>,
    values: BTreeMap<&'static str, String>,
    help: bool,
    version: bool,
}

/// Splits `args`. On a bad option it returns the error together with what
/// was scanned so far, so that `--help` can still be honoured.
fn scan(args: &[String]) -> (Scan<'_>, Option<UsageError>) {
    let mut out = Scan::default();
    let mut positional_only = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if positional_only || arg == "-" || !arg.starts_with('-') {
            out.words.push(arg);
            continue;
        }
        match arg.as_str() {
            "--" => {
                positional_only = true;
                continue;
            }
            "--help" | "-h" => {
                out.help = true;
                continue;
            }
            "--version" | "-V" => {
                out.version = true;
                continue;
            }
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return (out, Some(UsageError(format!("unknown option {arg}"))));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(kind) = classify(name) else {
            return (out, Some(unknown_option(arg, name)));
        };
        if let OptionKind::Switch(switch) = kind {
            if inline.is_some() {
                return (out, Some(UsageError(format!("--{name} takes no value"))));
            }
            if !out.switches.insert(switch) {
                return (out, Some(UsageError(format!("--{name} is given twice"))));
            }
            continue;
        }
        let value = match inline {
            Some(value) => value.to_owned(),
            None => match rest.next() {
                Some(value) if !value.starts_with("--") => value.clone(),
                _ => {
                    let shown = value_name(name).unwrap_or("VALUE");
                    let error = UsageError(format!("--{name} needs a value: --{name} {shown}"));
                    return (out, Some(error));
                }
            },
        };
        let fresh = match kind {
            OptionKind::Config(key) => out.flags.insert(key, value).is_none(),
            OptionKind::Value(option) => out.values.insert(option, value).is_none(),
            OptionKind::Switch(_) => true,
        };
        if !fresh {
            return (out, Some(UsageError(format!("--{name} is given twice"))));
        }
    }
    (out, None)
}

/// Parses the command line, without `argv[0]`. `hearth` alone means
/// `hearth serve`. `--help` anywhere gives the help of the command named
/// before it; `--version` anywhere gives the version.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let (scan, error) = scan(args);
    if scan.help {
        let text = help(&scan.words)?;
        return Ok(Invocation { command: Command::Help(text), flags: BTreeMap::new() });
    }
    // A later --help would have been missed when scanning stopped early.
    let help_later = args.iter().take_while(|arg| *arg != "--").any(|arg| arg == "--help" || arg == "-h");
    if let Some(error) = error {
        if help_later {
            let text = help(&scan.words)?;
            return Ok(Invocation { command: Command::Help(text), flags: BTreeMap::new() });
        }
        return Err(error);
    }
    if scan.version {
        return Ok(Invocation { command: Command::Version, flags: BTreeMap::new() });
    }
    let command = command(&scan)?;
    Ok(Invocation { command, flags: scan.flags })
}

fn command(scan: &Scan<'_>) -> Result<Command, UsageError> {
    let words = &scan.words;
    let Some(first) = words.first() else {
        return own_options_allowed(scan, &COMMANDS[0]).map(|()| Command::Serve);
    };
    if *first == "help" {
        return help(&words[1..]).map(Command::Help);
    }
    let Some(spec) = find_command(words) else {
        if GROUPS.contains(first) {
            let subcommands: Vec<&str> =
                COMMANDS.iter().filter(|spec| spec.path[0] == *first).map(|spec| spec.path[1]).collect();
            let message = match words.get(1) {
                Some(sub) => format!("unknown subcommand \"{first} {sub}\""),
                None => format!("\"{first}\" needs a subcommand"),
            };
            return Err(UsageError(format!("{message}; choose one of: {}", subcommands.join(", "))));
        }
        return Err(unknown_command(first));
    };
    own_options_allowed(scan, spec)?;
    let args = &words[spec.path.len()..];
    let command_name = spec.path.join(" ");
    if args.len() < spec.args.len() {
        return Err(UsageError(format!(
            "`hearth {command_name}` needs {}; usage: {}",
            spec.args[args.len()],
            usage_line(spec)
        )));
    }
    if let Some(extra) = args.get(spec.args.len()) {
        return Err(UsageError(format!("unexpected argument \"{extra}\"; usage: {}", usage_line(spec))));
    }
    for (name, value) in spec.args.iter().zip(args) {
        if value.is_empty() {
            return Err(UsageError(format!("{name} must not be empty")));
        }
    }
    let arg = |i: usize| args[i].to_owned();
    let switch = |name: &str| scan.switches.contains(name);
    let command = match spec.path {
        ["serve"] => Command::Serve,
        ["user", "add"] => Command::UserAdd {
            name: arg(0),
            password_stdin: switch("password-stdin"),
            admin: switch("admin"),
        },
        ["user", "list"] => Command::UserList,
        ["user", "reset-password"] => {
            Command::UserResetPassword { name: arg(0), password_stdin: switch("password-stdin") }
        }
        ["user", "deactivate"] => Command::UserDeactivate { name: arg(0) },
        ["token", "create"] => Command::TokenCreate {
            uses: number(scan, "uses", TOKEN_USES_MIN, u32::MAX)?,
            expires_in_days: number(
                scan,
                "expires-in",
                TOKEN_EXPIRES_IN_DAYS_MIN,
                TOKEN_EXPIRES_IN_DAYS_MAX,
            )?,
            token: match scan.values.get("token") {
                Some(token) => Some(registration_token(token)?),
                None => None,
            },
        },
        ["token", "list"] => Command::TokenList,
        ["token", "revoke"] => Command::TokenRevoke { token: registration_token(args[0])? },
        ["reports", "list"] => Command::ReportsList { all: switch("all") },
        ["reports", "resolve"] => Command::ReportsResolve { id: report_id(args[0])? },
        ["backup"] => Command::Backup { path: PathBuf::from(args[0]) },
        ["key", "rotate"] => Command::KeyRotate,
        ["media", "stats"] => Command::MediaStats,
        ["media", "purge"] => Command::MediaPurge {
            older_than_days: number(scan, "older-than", 0, MEDIA_PURGE_DAYS_MAX)?,
            remote_only: switch("remote-only"),
        },
        ["config", "example"] => Command::ConfigExample,
        // COMMANDS and this match list the same paths; a test checks it.
        _ => return Err(unknown_command(first)),
    };
    Ok(command)
}

/// Refuses command options given to a command that does not take them.
fn own_options_allowed(scan: &Scan<'_>, spec: &CommandSpec) -> Result<(), UsageError> {
    let given = scan.switches.iter().chain(scan.values.keys());
    for option in given {
        if !spec.options.contains(option) {
            return Err(UsageError(format!(
                "--{option} is not an option of `hearth {}`",
                spec.path.join(" ")
            )));
        }
    }
    Ok(())
}

fn number(scan: &Scan<'_>, option: &str, min: u32, max: u32) -> Result<Option<u32>, UsageError> {
    let Some(text) = scan.values.get(option) else {
        return Ok(None);
    };
    match text.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => {
            Err(UsageError(format!("--{option} must be a whole number from {min} to {max}, got \"{text}\"")))
        }
    }
}

/// A report's ID: a positive whole number.
fn report_id(text: &str) -> Result<i64, UsageError> {
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError(format!("a report ID is a positive whole number, got \"{text}\""))),
    }
}

/// Checks a registration token against the specification's grammar: 1 to 64
/// of `A-Z a-z 0-9 . _ ~ -`.
fn registration_token(token: &str) -> Result<String, UsageError> {
    if !crate::core::ids::is_valid_registration_token(token) {
        return Err(UsageError(format!(
            "a registration token is 1 to {} of A-Z a-z 0-9 . _ ~ -, got \"{token}\"",
            crate::core::ids::REGISTRATION_TOKEN_MAX_LEN
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests;
