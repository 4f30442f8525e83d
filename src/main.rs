//! The `hearth` binary: parses the command line, loads the configuration,
//! and runs the server or one of the admin commands. Nothing imports it.
//!
//! Exit codes: 0 success or clean shutdown, 2 bad usage or configuration,
//! 1 runtime failure.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use hearth::cli::{self, Command};
use hearth::config::{self, Config};
use hearth::core::ids;
use hearth::crypto::{password, sign::ServerKey, token};
use hearth::storage::{self, media, profiles, reg_tokens, reports, server_keys, users, Db};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inv = match cli::parse(&args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("hearth: {e}\nTry 'hearth --help'.");
            return ExitCode::from(2);
        }
    };
    // RUST_LOG, the convention of Rust programs, stands in for
    // HEARTH_LOG_LEVEL when only a plain level name is given.
    let env = |key: &str| {
        std::env::var(key).ok().or_else(|| {
            (key == "HEARTH_LOG_LEVEL")
                .then(|| std::env::var("RUST_LOG").ok())
                .flatten()
                .filter(|v| config::LogLevel::parse(v).is_some())
        })
    };
    let load = || -> Result<Config, ExitCode> {
        let path = config::config_path(&inv.flags, &env);
        config::load(path.as_deref(), &inv.flags, &env).map_err(|e| {
            eprintln!("hearth: {e}");
            ExitCode::from(2)
        })
    };
    match inv.command {
        Command::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("hearth {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::ConfigExample => {
            print!("{}", config::example());
            ExitCode::SUCCESS
        }
        Command::Serve => match load() {
            Ok(cfg) => {
                hearth::log::set_level(log_level(&cfg));
                hearth::log::install();
                ExitCode::from(hearth::server::run(cfg) as u8)
            }
            Err(code) => code,
        },
        command => match load() {
            Ok(cfg) => match admin(&cfg, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hearth: {e}");
                    ExitCode::from(1)
                }
            },
            Err(code) => code,
        },
    }
}

fn log_level(cfg: &Config) -> u8 {
    use config::LogLevel::*;
    match cfg.log_level {
        Error => hearth::log::ERROR,
        Warn => hearth::log::WARN,
        Info => hearth::log::INFO,
        Debug => hearth::log::DEBUG,
        Trace => hearth::log::TRACE,
    }
}

/// Length of a generated registration token.
const REG_TOKEN_LEN: usize = 16;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The admin commands: they open the same database file as the server (which
/// may be running; SQLite's locking keeps both consistent).
fn admin(cfg: &Config, command: Command) -> Result<(), String> {
    if let Command::Backup { path } = &command {
        storage::backup_file(&cfg.database, path)?;
        println!("backed up {} to {}", cfg.database.display(), path.display());
        return Ok(());
    }
    let db = Db::open(&cfg.database)?;
    let now = storage::now_ms();
    let write = |f: &dyn Fn(&storage::Tx) -> hearth::error::Result<bool>| {
        db.write(|tx| f(tx)).map_err(|e| e.message.to_string())
    };
    let user_id_of = |name: &str| -> Result<String, String> {
        let id = if name.starts_with('@') { name.to_owned() } else { ids::user_id(name, &cfg.server_name) };
        match ids::parse_user_id(&id) {
            Some((_, server)) if server == cfg.server_name => Ok(id),
            _ => Err(format!("{name}: not a user of {}", cfg.server_name)),
        }
    };
    match command {
        Command::UserAdd { name, password_stdin, admin } => {
            let local = name.strip_prefix('@').map(|n| n.split(':').next().unwrap_or("")).unwrap_or(&name);
            if !ids::is_valid_localpart(local) {
                return Err(format!("{name}: user names may contain only a-z, 0-9 and ._=-/+"));
            }
            let user_id = user_id_of(&name)?;
            if user_id.len() > ids::USER_ID_MAX_BYTES {
                return Err(format!("{name}: user ID too long"));
            }
            let hash = new_password_hash(password_stdin)?;
            let created = write(&|tx| {
                let created = users::create(tx, &user_id, Some(&hash), admin, now)?;
                // Named by its localpart until it picks a name, as `/register` does.
                if created {
                    if let Some((localpart, _)) = ids::parse_user_id(&user_id) {
                        profiles::set_displayname(tx, &user_id, Some(localpart))?;
                    }
                }
                Ok(created)
            })?;
            if !created {
                return Err(format!("{user_id} already exists"));
            }
            println!("created {user_id}{}", if admin { " (admin)" } else { "" });
        }
        Command::UserList => {
            let all = db.read(|tx| users::list(tx)).map_err(|e| e.message.to_string())?;
            println!("{:<40} {:<6} {:<12} created", "user", "admin", "state");
            for u in all {
                let state = if u.deactivated { "deactivated" } else { "active" };
                let admin = if u.is_admin { "yes" } else { "no" };
                println!("{:<40} {admin:<6} {state:<12} {}", u.user_id, hearth::log::timestamp(u.created_ts));
            }
        }
        Command::UserResetPassword { name, password_stdin } => {
            let user_id = user_id_of(&name)?;
            let hash = new_password_hash(password_stdin)?;
            // Signed out everywhere: devices (their tokens and keys with
            // them) and every pusher.
            let done = write(&|tx| hearth::accounts::set_password(tx, &user_id, &hash, true, None))?;
            if !done {
                return Err(format!("{user_id}: no such active user"));
            }
            println!("password of {user_id} reset; all its sessions were signed out");
        }
        Command::UserDeactivate { name } => {
            let user_id = user_id_of(&name)?;
            if !write(&|tx| hearth::accounts::deactivate(tx, &user_id, false))? {
                return Err(format!("{user_id}: no such user"));
            }
            println!("deactivated {user_id}");
        }
        Command::TokenCreate { uses, expires_in_days, token } => {
            let t = token.unwrap_or_else(|| token::random_string(REG_TOKEN_LEN, token::ALNUM));
            if !hearth::core::ids::is_valid_registration_token(&t) {
                return Err("a token is 1 to 64 characters of A-Z, a-z, 0-9 and ._~-".into());
            }
            let expiry = expires_in_days.map(|d| now + i64::from(d) * DAY_MS);
            if !write(&|tx| reg_tokens::create(tx, &t, uses.map(i64::from), expiry, now))? {
                return Err(format!("token {t} already exists"));
            }
            println!("{t}");
        }
        Command::TokenList => {
            let all = db.read(|tx| reg_tokens::list(tx)).map_err(|e| e.message.to_string())?;
            println!(
                "{:<24} {:<8} {:<8} {:<10} {:<26} valid",
                "token", "allowed", "pending", "completed", "expires"
            );
            for t in all {
                let allowed = t.uses_allowed.map_or("-".into(), |n| n.to_string());
                let expires = t.expiry_ts.map_or("never".into(), hearth::log::timestamp);
                let valid = if t.is_valid(now) { "yes" } else { "no" };
                println!(
                    "{:<24} {allowed:<8} {:<8} {:<10} {expires:<26} {valid}",
                    t.token, t.pending, t.completed
                );
            }
        }
        Command::TokenRevoke { token } => {
            if !write(&|tx| reg_tokens::delete(tx, &token))? {
                return Err(format!("no token {token}"));
            }
            println!("revoked {token}");
        }
        Command::ReportsList { all } => {
            let all = db.read(|tx| reports::list(tx, all)).map_err(|e| e.message.to_string())?;
            for r in all {
                println!("{}", report_line(&r));
            }
        }
        Command::ReportsResolve { id } => match write(&|tx| Ok(reports::resolve(tx, id, now)?.is_some()))? {
            true => println!("resolved report {id}"),
            false => return Err(format!("no report {id}")),
        },
        Command::KeyRotate => {
            let fresh =
                ServerKey::generate().map_err(|e| format!("no randomness for the signing key: {e}"))?;
            db.write(|tx| server_keys::rotate(tx, fresh.key_id(), &fresh.seed(), now))
                .map_err(|e| e.message.to_string())?;
            println!(
                "new signing key {} ({}); restart the server to sign with it",
                fresh.key_id(),
                fresh.public_key_b64()
            );
        }
        Command::MediaStats => {
            let s = db.read(|tx| media::stats(tx, &cfg.server_name)).map_err(|e| e.message.to_string())?;
            println!("local media      {}", s.local_media);
            println!("remote media     {}", s.remote_media);
            println!("media bytes      {}", s.media_bytes);
            println!("awaiting upload  {}", s.pending);
            println!("stored contents  {} ({} bytes, thumbnails included)", s.contents, s.stored_bytes);
            println!("thumbnails       {} ({} bytes)", s.thumbnails, s.thumbnail_bytes);
            println!("partial uploads  {} ({} bytes)", s.staged, s.staged_bytes);
        }
        Command::MediaPurge { older_than_days, remote_only } => {
            let before = older_than_days.map_or(i64::MIN, |d| now - i64::from(d) * DAY_MS);
            let purged = db
                .write(|tx| {
                    media::discard_stale_staging(tx, now - media::STAGED_STALE_MS)?;
                    media::purge(tx, before, &cfg.server_name, remote_only, now)
                })
                .map_err(|e| e.message.to_string())?;
            println!(
                "purged {} media, {} stored contents, {} bytes",
                purged.media, purged.contents, purged.bytes_freed
            );
        }
        _ => unreachable!("serve, help, version and config example are handled in main"),
    }
    Ok(())
}

/// One report as a line: `ID TIME REPORTER reported TARGET reason "…"
/// score N open|resolved TIME`, the reason quoted with its control
/// characters escaped so a report stays on its line.
fn report_line(r: &reports::Report) -> String {
    let target = match (&r.room_id, &r.event_id, &r.user_id) {
        (Some(room), Some(event), _) => format!("event {event} in {room}"),
        (Some(room), None, _) => format!("room {room}"),
        (_, _, Some(user)) => format!("user {user}"),
        _ => "nothing".to_owned(),
    };
    let reason = r.reason.as_deref().map_or("-".to_owned(), |t| format!("{t:?}"));
    let score = r.score.map_or("-".to_owned(), |s| s.to_string());
    let resolved =
        r.resolved_ts.map_or("open".to_owned(), |t| format!("resolved {}", hearth::log::timestamp(t)));
    format!(
        "{} {} {} reported {target} reason {reason} score {score} {resolved}",
        r.id,
        hearth::log::timestamp(r.received_ts),
        r.reporter
    )
}

/// Reads a new password (from the first line of stdin, or twice from the
/// terminal without echo) and hashes it.
fn new_password_hash(from_stdin: bool) -> Result<String, String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let first = prompt_hidden("Password: ")?;
        let again = prompt_hidden("Again: ")?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    if pw.is_empty() {
        return Err("the password must not be empty".into());
    }
    password::hash_password(&pw).map_err(|e| e.to_string())
}

/// Asks on the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String, String> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(0) } != 1 {
        return Err("no terminal to ask for the password on: use --password-stdin".into());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: termios is plain data filled by tcgetattr before use; the
    // original settings are restored before returning.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return Err("cannot read terminal settings".into());
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        saved
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
    eprintln!();
    read.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
