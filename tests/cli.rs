//! The admin command line, run as a process: help, config, users, tokens,
//! backups, and the exit codes for bad usage. Commands that touch accounts
//! run against the database of a live server, as an operator would.

mod common;

use common::{assert_error, hearth, hearth_env, password_login, Server, TempDir, V3};
use serde_json::json;

const PW: &str = "cli-password-1";

#[test]
fn help_and_version() {
    let (code, out, err) = hearth(&["--help"], "");
    assert_eq!(code, 0, "{err}");
    for command in [
        "serve",
        "user add",
        "user list",
        "user reset-password",
        "user deactivate",
        "token create",
        "token list",
        "token revoke",
        "reports list",
        "reports resolve",
        "backup",
        "config example",
    ] {
        assert!(out.contains(&format!("hearth {command}")), "{command} missing:\n{out}");
    }

    let (code, out, err) = hearth(&["serve", "--help"], "");
    assert_eq!(code, 0, "{err}");
    for (key, _) in hearth::config::KEYS {
        let option = format!("--{}", key.replace('_', "-"));
        assert!(out.contains(&option), "{option} missing:\n{out}");
        let env = format!("HEARTH_{}", key.to_ascii_uppercase());
        assert!(out.contains(&env), "{env} missing:\n{out}");
    }
    assert!(out.contains("--config"), "{out}");

    let (code, out, _) = hearth(&["--version"], "");
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("hearth {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_example_is_valid_toml_and_accepted() {
    let (code, out, err) = hearth(&["config", "example"], "");
    assert_eq!(code, 0, "{err}");
    let table: toml::Table = out.parse().expect("the example is TOML");
    // Everything is commented out: the example sets nothing.
    assert!(table.is_empty(), "{table:?}");
    for (key, _) in hearth::config::KEYS {
        assert!(out.contains(&format!("# {key} = ")), "{key} missing");
    }
    // Uncommented, it is a configuration the binary accepts.
    let uncommented: String = out
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| hearth::config::KEYS.iter().any(|(k, _)| l.starts_with(&format!("{k} = "))))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = TempDir::new();
    let file = dir.join("hearth.toml");
    std::fs::write(&file, uncommented).expect("writing the config");
    let db = dir.join("x.db").display().to_string();
    let file = file.display().to_string();
    let (code, out, err) = hearth(&["--config", &file, "--database", &db, "user", "list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("user"), "{out}");
}

#[test]
fn users_are_managed_from_the_command_line() {
    let s = Server::start_with(&["--registration", "closed"], &[]);

    let (code, out, err) = s.hearth(&["user", "add", "alice", "--password-stdin"], &format!("{PW}\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("@alice:localhost"), "{out}");
    let (code, _, err) =
        s.hearth(&["user", "add", "@root:localhost", "--password-stdin", "--admin"], "rootpw\n");
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = s.hearth(&["user", "list"], "");
    assert_eq!(code, 0, "{err}");
    let row = |who: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_else(|| panic!("{who} not listed:\n{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("@alice:localhost")[1..3], ["no", "active"]);
    assert_eq!(row("@root:localhost")[1..3], ["yes", "active"]);

    // Over HTTP, with the password given on stdin (the newline is not part of it).
    let token = s.login("alice", PW);
    // Named by its localpart, as a registered account is.
    let (status, name) = s.get(&format!("{V3}/profile/@alice:localhost/displayname"), None);
    assert_eq!((status, name), (200, json!({ "displayname": "alice" })));

    // Existing users, bad names and other servers' users are refused.
    let (code, _, err) = s.hearth(&["user", "add", "alice", "--password-stdin"], "other\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = s.hearth(&["user", "add", "Bad Name", "--password-stdin"], "pw\n");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = s.hearth(&["user", "add", "@eve:elsewhere.example", "--password-stdin"], "pw\n");
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = s.hearth(&["user", "add", "emptypw", "--password-stdin"], "\n");
    assert_eq!(code, 1, "{err}");
    // Without --password-stdin it asks on a terminal; there is none here.
    let (code, _, err) = s.hearth(&["user", "add", "noterm"], "pw\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--password-stdin"), "{err}");
    let (_, out, _) = s.hearth(&["user", "list"], "");
    assert!(!out.contains("emptypw") && !out.contains("noterm"), "{out}");
    s.login("alice", PW);
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "KEY", "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en",
        "data": { "url": "https://push.example.org/_matrix/push/v1/notify" },
    });
    assert_eq!(s.post(&format!("{V3}/pushers/set"), Some(&token), pusher).0, 200);

    // Reset: a new password, and every existing session is signed out,
    // pushers included.
    let (code, _, err) = s.hearth(&["user", "reset-password", "alice", "--password-stdin"], "fresh-pw-2\n");
    assert_eq!(code, 0, "{err}");
    let got = s.get(&format!("{V3}/account/whoami"), Some(&token));
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    let old = s.post(&format!("{V3}/login"), None, password_login("alice", PW));
    assert_error(&old, 403, "M_FORBIDDEN");
    let token = s.login("alice", "fresh-pw-2");
    let (_, left) = s.get(&format!("{V3}/pushers"), Some(&token));
    assert_eq!(left, json!({ "pushers": [] }));
    let (code, _, err) = s.hearth(&["user", "reset-password", "nobody", "--password-stdin"], "x\n");
    assert_eq!(code, 1, "{err}");

    // Deactivate: sessions end and the account cannot log in.
    let (code, out, err) = s.hearth(&["user", "deactivate", "@alice:localhost"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("@alice:localhost"), "{out}");
    assert_error(&s.get(&format!("{V3}/account/whoami"), Some(&token)), 401, "M_UNKNOWN_TOKEN");
    let login = s.post(&format!("{V3}/login"), None, password_login("alice", "fresh-pw-2"));
    assert_error(&login, 403, "M_USER_DEACTIVATED");
    let (_, out, _) = s.hearth(&["user", "list"], "");
    assert!(out.lines().any(|l| l.starts_with("@alice:localhost") && l.contains("deactivated")), "{out}");
    let (code, _, _) = s.hearth(&["user", "deactivate", "nobody"], "");
    assert_eq!(code, 1);
    // A deactivated name is not handed out again.
    let (code, _, err) = s.hearth(&["user", "add", "alice", "--password-stdin"], "again\n");
    assert_eq!(code, 1, "{err}");

    // Nothing secret reached the server's log.
    let log = s.log_text();
    assert!(!log.contains(PW) && !log.contains("fresh-pw-2"), "{log}");
}

#[test]
fn registration_tokens_are_managed_from_the_command_line() {
    let s = Server::start_with(&["--registration", "token"], &[]);
    let (code, out, err) = s.hearth(&["token", "create"], "");
    assert_eq!(code, 0, "{err}");
    let generated = out.trim().to_owned();
    assert!(!generated.is_empty() && generated.bytes().all(|b| b.is_ascii_alphanumeric()), "{generated:?}");
    let (code, out, err) =
        s.hearth(&["token", "create", "--token", "party-2024", "--uses", "5", "--expires-in", "7"], "");
    assert_eq!((code, out.trim()), (0, "party-2024"), "{err}");
    let (code, _, err) = s.hearth(&["token", "create", "--token", "party-2024"], "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");

    let (code, out, err) = s.hearth(&["token", "list"], "");
    assert_eq!(code, 0, "{err}");
    let party: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("party-2024"))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    // token, allowed, pending, completed, expires, valid
    assert_eq!(party[1..4], ["5", "0", "0"], "{out}");
    assert_eq!(party.last(), Some(&"yes"), "{out}");
    let unlimited = out.lines().find(|l| l.starts_with(&generated)).unwrap_or_else(|| panic!("{out}"));
    assert!(unlimited.contains("never"), "{unlimited}");

    let validity = |t: &str| {
        s.get(&format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={t}"), None)
    };
    assert_eq!(validity("party-2024").1, json!({ "valid": true }));
    let (code, out, err) = s.hearth(&["token", "revoke", "party-2024"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("party-2024"), "{out}");
    assert_eq!(validity("party-2024").1, json!({ "valid": false }));
    let (status, refused) = s.post(
        &format!("{V3}/register"),
        None,
        json!({
            "username": "late",
            "password": PW,
            "auth": { "type": "m.login.registration_token", "token": "party-2024" },
        }),
    );
    assert_eq!(status, 401, "{refused}");
    let (_, out, _) = s.hearth(&["token", "list"], "");
    assert!(!out.contains("party-2024"), "{out}");
    let (code, _, _) = s.hearth(&["token", "revoke", "party-2024"], "");
    assert_eq!(code, 1);

    // Usage errors are exit 2.
    let (code, _, err) = s.hearth(&["token", "create", "--uses", "0"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = s.hearth(&["token", "create", "--token", "no/slash"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn backup_of_a_running_server_starts_a_new_one() {
    let s = Server::start();
    s.register("alice", PW);
    let (_, token, device) = s.register("bob", PW);
    // A write the copy must carry (most likely still in the WAL only).
    let (status, _) =
        s.put(&format!("{V3}/devices/{device}"), Some(&token), json!({ "display_name": "bob's box" }));
    assert_eq!(status, 200);

    let backups = TempDir::new();
    let file = backups.join("copy.db");
    let (code, out, err) = s.hearth(&["backup", &file.display().to_string()], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("copy.db"), "{out}");
    assert!(file.is_file());
    // The server is unaffected.
    s.login("alice", PW);

    let db = file.display().to_string();
    let restored = Server::start_with(&["--database", &db], &[]);
    restored.login("alice", PW);
    let (_, names) = restored.get(&format!("{V3}/devices"), Some(&restored.login("bob", PW)));
    assert!(
        names["devices"].as_array().expect("devices").iter().any(|d| d["display_name"] == "bob's box"),
        "{names}"
    );
    // The copy carries the signing key too.
    let key = |srv: &Server| srv.get("/_matrix/key/v2/server", None).1["verify_keys"].clone();
    assert_eq!(key(&s), key(&restored));

    // A backup of a missing database fails at run time.
    let missing = backups.join("missing.db").display().to_string();
    let (code, _, err) = hearth(&["backup", "--database", &missing, &db], "");
    assert_eq!(code, 1, "{err}");
}

#[test]
fn bad_configuration_and_usage_exit_2() {
    let dir = TempDir::new();
    let db = dir.join("h.db").display().to_string();

    let (code, _, err) = hearth(&["serve", "--workers", "0", "--database", &db], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("workers"), "{err}");

    let (code, _, err) = hearth_env(&["serve", "--database", &db], &[("HEARTH_REGISTRATION", "maybe")], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("registration"), "{err}");
    assert!(err.contains("HEARTH_REGISTRATION"), "{err}");

    let (code, _, err) = hearth(&["serve", "--max-body-bytes", "10", "--database", &db], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_body_bytes"), "{err}");

    let (code, _, err) = hearth(&["serve", "--sync-timeout-max-ms", "5", "--database", &db], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sync_timeout_max_ms"), "{err}");

    let file = dir.join("bad.toml");
    std::fs::write(&file, "registraton = \"open\"\n").expect("writing");
    let (code, _, err) = hearth(&["serve", "--config", &file.display().to_string(), "--database", &db], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("registraton"), "{err}");

    let (code, _, err) = hearth(&["serve", "--no-such-flag"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, _, err) = hearth(&["frobnicate"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = hearth(&["user", "add"], "");
    assert_eq!(code, 2, "{err}");

    // None of these created the database.
    assert!(!dir.join("h.db").exists());
}

#[test]
fn a_busy_port_is_a_runtime_failure() {
    let s = Server::start();
    let dir = TempDir::new();
    let db = dir.join("h.db").display().to_string();
    let listen = format!("127.0.0.1:{}", s.port);
    let (code, _, err) = hearth(&["serve", "--listen", &listen, "--database", &db], "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&listen), "{err}");
}
