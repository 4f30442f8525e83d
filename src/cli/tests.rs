//! Unit tests of `cli` (beside it, so the module reads without them).

use super::*;

fn run(line: &str) -> Result<Invocation, UsageError> {
    let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    parse(&args)
}

fn command_of(line: &str) -> Command {
    run(line).unwrap_or_else(|e| panic!("{line}: {e}")).command
}

fn flags_of(line: &str) -> BTreeMap<String, String> {
    run(line).unwrap_or_else(|e| panic!("{line}: {e}")).flags
}

fn error_of(line: &str) -> String {
    match run(line) {
        Ok(invocation) => panic!("{line}: parsed as {invocation:?}"),
        Err(e) => e.0,
    }
}

fn help_of(line: &str) -> String {
    match command_of(line) {
        Command::Help(text) => text,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn nothing_means_serve() {
    let invocation = parse(&[]).expect("parses");
    assert_eq!(invocation.command, Command::Serve);
    assert!(invocation.flags.is_empty());
    assert_eq!(command_of("serve"), Command::Serve);
}

#[test]
fn serve_options() {
    let flags = flags_of(
        "serve --config /etc/hearth/hearth.toml --listen 0.0.0.0:8008 --server-name example.org \
         --database /var/lib/hearth/hearth.db --registration open --log-level debug --workers 8",
    );
    let expected: BTreeMap<String, String> = [
        ("config", "/etc/hearth/hearth.toml"),
        ("listen", "0.0.0.0:8008"),
        ("server_name", "example.org"),
        ("database", "/var/lib/hearth/hearth.db"),
        ("registration", "open"),
        ("log_level", "debug"),
        ("workers", "8"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(flags, expected);
}

#[test]
fn options_before_the_command_and_without_it() {
    let invocation = run("--server-name example.org").expect("parses");
    assert_eq!(invocation.command, Command::Serve);
    assert_eq!(invocation.flags["server_name"], "example.org");
    let invocation = run("--config c.toml user list").expect("parses");
    assert_eq!(invocation.command, Command::UserList);
    assert_eq!(invocation.flags["config"], "c.toml");
}

#[test]
fn key_equals_value_form() {
    let flags = flags_of("--workers=3 --server-name=example.org:8448 --public-baseurl=https://x.example/a=b");
    assert_eq!(flags["workers"], "3");
    assert_eq!(flags["server_name"], "example.org:8448");
    assert_eq!(flags["public_baseurl"], "https://x.example/a=b");
    // An explicit empty value is passed on for config to judge.
    assert_eq!(flags_of("--well-known-server=")["well_known_server"], "");
}

#[test]
fn every_config_key_is_an_option() {
    for (key, _) in config::KEYS {
        let option = key.replace('_', "-");
        let flags = flags_of(&format!("serve --{option} v"));
        assert_eq!(flags.get(*key).map(String::as_str), Some("v"), "{key}");
        let flags = flags_of(&format!("token list --{option}=w"));
        assert_eq!(flags.get(*key).map(String::as_str), Some("w"), "{key}");
        assert!(value_name(&option).is_some_and(|v| v != "VALUE"), "{key}");
    }
}

#[test]
fn unknown_options_are_errors() {
    assert!(error_of("--colour red").contains("unknown option --colour"));
    assert!(error_of("serve -x").contains("unknown option -x"));
    let message = error_of("--server_name example.org");
    assert!(message.contains("did you mean --server-name?"), "{message}");
    assert!(error_of("--listenn=1.2.3.4:5").contains("unknown option"));
}

#[test]
fn missing_values_are_errors() {
    assert!(error_of("--workers").contains("--workers needs a value"));
    assert!(error_of("serve --config").contains("--config needs a value"));
    assert!(error_of("--server-name --workers 3").contains("--server-name needs a value"));
    assert!(error_of("token create --uses").contains("--uses needs a value"));
}

#[test]
fn repeated_options_are_errors() {
    assert!(error_of("--workers 2 --workers=3").contains("given twice"));
    assert!(error_of("user add bob --admin --admin").contains("given twice"));
    assert!(error_of("token create --uses 1 --uses 2").contains("given twice"));
}

#[test]
fn user_commands() {
    assert_eq!(
        command_of("user add alice"),
        Command::UserAdd { name: "alice".to_owned(), password_stdin: false, admin: false }
    );
    assert_eq!(
        command_of("user add alice --password-stdin --admin"),
        Command::UserAdd { name: "alice".to_owned(), password_stdin: true, admin: true }
    );
    assert_eq!(
        command_of("--admin user add alice --database x.db"),
        Command::UserAdd { name: "alice".to_owned(), password_stdin: false, admin: true }
    );
    assert_eq!(command_of("user list"), Command::UserList);
    assert_eq!(
        command_of("user reset-password bob --password-stdin"),
        Command::UserResetPassword { name: "bob".to_owned(), password_stdin: true }
    );
    assert_eq!(command_of("user deactivate bob"), Command::UserDeactivate { name: "bob".to_owned() });
    let invocation = run("user add alice --config /etc/h.toml --server-name example.org").expect("parses");
    assert_eq!(invocation.flags["config"], "/etc/h.toml");
    assert_eq!(invocation.flags["server_name"], "example.org");

    assert!(error_of("user add").contains("needs NAME"));
    assert!(error_of("user add alice bob").contains("unexpected argument \"bob\""));
    assert!(error_of("user list extra").contains("unexpected argument"));
    assert!(error_of("user deactivate").contains("needs NAME"));
    assert!(error_of("user").contains("needs a subcommand"));
    assert!(error_of("user remove bob").contains("unknown subcommand"));
    assert!(error_of("user add alice --admin=yes").contains("takes no value"));
    assert!(error_of("user list --admin").contains("not an option of `hearth user list`"));
    assert!(error_of("user reset-password bob --admin").contains("not an option"));
    assert!(error_of("serve --password-stdin").contains("not an option"));
    assert!(error_of("--admin").contains("not an option of `hearth serve`"));
    assert!(parse(&["user".into(), "add".into(), String::new()])
        .expect_err("empty name")
        .0
        .contains("must not be empty"));
}

#[test]
fn token_commands() {
    assert_eq!(
        command_of("token create"),
        Command::TokenCreate { uses: None, expires_in_days: None, token: None }
    );
    assert_eq!(
        command_of("token create --uses 5 --expires-in=7 --token abc-DEF_1.2~"),
        Command::TokenCreate {
            uses: Some(5),
            expires_in_days: Some(7),
            token: Some("abc-DEF_1.2~".to_owned())
        }
    );
    assert_eq!(command_of("token list"), Command::TokenList);
    assert_eq!(command_of("token revoke abc"), Command::TokenRevoke { token: "abc".to_owned() });
    for bad in [
        "token create --uses 0",
        "token create --uses -1",
        "token create --uses five",
        "token create --uses 4294967296",
        "token create --uses 1.5",
        "token create --expires-in 0",
        "token create --expires-in 3651",
        "token create --expires-in 1e3",
    ] {
        assert!(error_of(bad).contains("must be a whole number"), "{bad}");
    }
    assert_eq!(
        command_of("token create --uses 4294967295 --expires-in 3650"),
        Command::TokenCreate { uses: Some(u32::MAX), expires_in_days: Some(3650), token: None }
    );
    assert!(error_of("token create --token a/b").contains("registration token"));
    let long = "a".repeat(crate::core::ids::REGISTRATION_TOKEN_MAX_LEN + 1);
    assert!(error_of(&format!("token create --token {long}")).contains("registration token"));
    assert!(error_of("token create --token=").contains("registration token"));
    assert!(error_of("token revoke a+b").contains("registration token"));
    assert!(error_of("token revoke").contains("needs TOKEN"));
    assert!(error_of("token list --uses 3").contains("not an option"));
    assert!(error_of("user add bob --token x").contains("not an option"));
}

#[test]
fn backup_and_config_commands() {
    assert_eq!(command_of("backup /tmp/b.db"), Command::Backup { path: PathBuf::from("/tmp/b.db") });
    assert!(error_of("backup").contains("needs FILE"));
    assert!(error_of("backup a b").contains("unexpected argument"));
    assert_eq!(command_of("config example"), Command::ConfigExample);
    assert!(error_of("config").contains("needs a subcommand"));
    assert!(error_of("config show").contains("unknown subcommand"));
}

#[test]
fn double_dash_ends_options() {
    assert_eq!(
        command_of("backup -- --odd-name.db"),
        Command::Backup { path: PathBuf::from("--odd-name.db") }
    );
    assert_eq!(command_of("backup -"), Command::Backup { path: PathBuf::from("-") });
}

#[test]
fn unknown_command_is_an_error() {
    assert!(error_of("frobnicate").contains("unknown command \"frobnicate\""));
    assert!(error_of("help frobnicate").contains("unknown command"));
    assert!(error_of("frobnicate --help").contains("unknown command"));
}

#[test]
fn version() {
    assert_eq!(command_of("--version"), Command::Version);
    assert_eq!(command_of("-V"), Command::Version);
    assert!(super::version().starts_with("hearth "));
}

#[test]
fn general_help_is_complete() {
    let text = help_of("--help");
    assert_eq!(text, help_of("help"));
    assert_eq!(text, help_of("-h"));
    for spec in COMMANDS {
        assert!(text.contains(&usage_line(spec)), "{}", usage_line(spec));
        assert!(text.contains(spec.summary));
    }
    for needle in [
        "--config FILE",
        "HEARTH_CONFIG",
        "--database PATH",
        "--server-name NAME",
        "--version",
        "Exit status",
        "  0  ",
        "  1  ",
        "  2  ",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}

#[test]
fn serve_help_lists_every_option_with_env_and_default() {
    let text = help_of("serve --help");
    assert_eq!(text, help_of("help serve"));
    assert!(text.contains("HEARTH_CONFIG"));
    for (key, summary) in config::KEYS {
        let option = key.replace('_', "-");
        let value = value_name(&option).expect("value name");
        assert!(text.contains(&format!("--{option} {value}")), "{key}");
        assert!(text.contains(summary), "{key}");
        assert!(text.contains(&config::env_var(key)), "{key}");
        let default = config::default_text(key).expect("default");
        assert!(text.contains(&format!("Default: {default}.")), "{key}");
    }
    assert!(text.contains("Exit status"));
}

#[test]
fn help_for_each_command() {
    for spec in COMMANDS {
        let words = spec.path.join(" ");
        let text = help_of(&format!("{words} --help"));
        assert!(text.starts_with(&format!("Usage: {}", usage_line(spec))), "{words}");
        assert_eq!(text, help_of(&format!("help {words}")), "{words}");
        assert_eq!(text, help_of(&format!("--help {words}")), "{words}");
        assert!(text.contains("Exit status"), "{words}");
        for option in spec.options {
            assert!(text.contains(&format!("\n  --{option}")), "{words} --{option}");
        }
    }
    // Arguments and bad options before --help do not prevent help.
    let text = help_of("user add alice --admin --help");
    assert!(text.starts_with("Usage: hearth user add NAME"));
    let text = help_of("token create --bogus --help");
    assert!(text.starts_with("Usage: hearth token create"));
    let text = help_of("serve --workers --help");
    assert!(text.starts_with("Usage: hearth serve"));
    // --help after -- is an argument, not a request for help.
    assert_eq!(command_of("backup -- --help"), Command::Backup { path: PathBuf::from("--help") });
}

#[test]
fn help_for_groups() {
    for group in GROUPS {
        let text = help_of(&format!("{group} --help"));
        assert_eq!(text, help_of(&format!("help {group}")));
        for spec in COMMANDS.iter().filter(|spec| spec.path[0] == *group) {
            assert!(text.contains(&usage_line(spec)), "{group}");
        }
    }
}

#[test]
fn every_command_spec_is_reachable() {
    for spec in COMMANDS {
        let mut line = spec.path.join(" ");
        for arg in spec.args {
            line.push_str(if *arg == "ID" { " 1" } else { " x" });
        }
        command_of(&line);
    }
    assert_eq!(COMMANDS[0].path, ["serve"]);
}

#[test]
fn usage_error_displays_its_message() {
    assert_eq!(UsageError("bad".to_owned()).to_string(), "bad");
}
