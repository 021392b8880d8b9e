use std::io::Write as _;
use std::path::Path;

use clap::{Parser, Subcommand, ValueEnum};

use super::*;

/// Always set where tests run, so it shows the environment beating the file.
const SET_ENV: &str = "PATH";
const UNSET_ENV: &str = "PHONEFARM_STARTUP_TEST_NEVER_SET_3f9c";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Auto,
    Poll,
}

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[arg(long, global = true, env = UNSET_ENV)]
    state_dir: Option<String>,
    #[arg(long, global = true, env = SET_ENV)]
    search_path: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Daemon {
        #[arg(long)]
        agent_id: String,
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..))]
        lease_seconds: u64,
        #[arg(long, value_delimiter = ',')]
        tcp: Vec<String>,
        #[arg(long, value_enum, default_value = "auto")]
        mode: Mode,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        usb: bool,
        #[arg(long)]
        verbose: bool,
    },
    Other {
        #[arg(long)]
        name: Option<String>,
    },
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn parse(args: &[&str], config: &Path) -> Result<Cli, ConfigError> {
    let mut all = vec!["pf", "--config", config.to_str().unwrap()];
    all.extend(args);
    parse_from(all, None, Path::new("/nonexistent/pf.toml"), &["daemon"])
}

fn daemon(cli: Cli) -> (String, u64, Vec<String>, Mode, bool, bool) {
    match cli.command {
        Cmd::Daemon {
            agent_id,
            lease_seconds,
            tcp,
            mode,
            usb,
            verbose,
        } => (agent_id, lease_seconds, tcp, mode, usb, verbose),
        Cmd::Other { .. } => panic!("daemon expected"),
    }
}

fn file_error(r: Result<Cli, ConfigError>) -> String {
    match r {
        Err(ConfigError::File(msg)) => msg,
        other => panic!("a file error expected, got {other:?}"),
    }
}

#[test]
fn the_file_sets_defaults_and_satisfies_required_options() {
    let f = file(
        "agent_id = \"rack-07\"\nlease_seconds = 90\ntcp = [\"a:1\", \"b:2\"]\nmode = \"poll\"\n\
         usb = false\nverbose = true\nstate_dir = \"/var/lib/x\"\n",
    );
    let cli = parse(&["daemon"], f.path()).unwrap();
    assert_eq!(cli.state_dir.as_deref(), Some("/var/lib/x"));
    let (id, lease, tcp, mode, usb, verbose) = daemon(cli);
    assert_eq!(id, "rack-07");
    assert_eq!(lease, 90);
    assert_eq!(tcp, vec!["a:1", "b:2"]);
    assert_eq!(mode, Mode::Poll);
    assert!(!usb);
    assert!(verbose);
}

#[test]
fn a_flag_beats_the_file_and_the_file_beats_the_default() {
    let f = file("agent_id = \"from-file\"\ntcp = \"c:3,d:4\"\n");
    let (id, lease, tcp, ..) =
        daemon(parse(&["daemon", "--agent-id", "from-flag"], f.path()).unwrap());
    assert_eq!(id, "from-flag");
    assert_eq!(lease, 60, "no file value: the built-in default");
    assert_eq!(
        tcp,
        vec!["c:3", "d:4"],
        "a delimited string splits as on the command line"
    );
    let (_, _, tcp, ..) =
        daemon(parse(&["daemon", "--agent-id", "x", "--tcp", "e:5"], f.path()).unwrap());
    assert_eq!(tcp, vec!["e:5"], "a flag replaces the file's list");
}

#[test]
fn the_environment_beats_the_file() {
    let from_env = std::env::var(SET_ENV).expect("PATH is set");
    let f = file("agent_id = \"a\"\nsearch_path = \"/from/file\"\nstate_dir = \"/from/file\"\n");
    let cli = parse(&["daemon"], f.path()).unwrap();
    assert_eq!(cli.search_path.as_deref(), Some(from_env.as_str()));
    assert_eq!(
        cli.state_dir.as_deref(),
        Some("/from/file"),
        "{UNSET_ENV} is unset"
    );
    let cli = parse(&["--search-path", "/from/flag", "daemon"], f.path()).unwrap();
    assert_eq!(
        cli.search_path.as_deref(),
        Some("/from/flag"),
        "the flag beats the environment"
    );
}

#[test]
fn an_unknown_key_is_one_line_naming_it() {
    let f = file("agent_id = \"a\"\nnats_urll = \"nats://x\"\n");
    let msg = file_error(parse(&["daemon"], f.path()));
    assert!(msg.contains("key `nats_urll`: unknown key"), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    // An option of a subcommand that is not a section is not a key either.
    let f = file("name = \"n\"\n");
    let msg = file_error(parse(&["other"], f.path()));
    assert!(msg.contains("key `name`: unknown key"), "{msg}");
    // Nor is the flag spelt with dashes.
    let f = file("agent-id = \"a\"\n");
    assert!(file_error(parse(&["daemon"], f.path())).contains("key `agent-id`"));
}

#[test]
fn a_bad_value_is_one_line_naming_the_key() {
    for (text, key, why) in [
        ("lease_seconds = 3", "lease_seconds", "3 is not in 5.."),
        ("lease_seconds = \"soon\"", "lease_seconds", "invalid digit"),
        (
            "mode = \"sometimes\"",
            "mode",
            "possible values: auto, poll",
        ),
        ("usb = \"maybe\"", "usb", "invalid value \"maybe\""),
        (
            "agent_id = [\"a\", \"b\"]",
            "agent_id",
            "takes one value, not an array",
        ),
        ("agent_id = { x = 1 }", "agent_id", "expected a string"),
    ] {
        let f = file(text);
        let msg = file_error(parse(&["daemon", "--agent-id", "a"], f.path()));
        assert!(msg.contains(&format!("key `{key}`")), "{text}: {msg}");
        assert!(msg.contains(why), "{text}: {msg}");
        assert!(!msg.contains('\n'), "{text}: {msg}");
    }
}

#[test]
fn a_syntax_error_names_the_line() {
    let f = file("agent_id = \"a\"\nlease_seconds = = 4\n");
    let msg = file_error(parse(&["daemon"], f.path()));
    assert!(msg.contains("line 2"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn which_file() {
    let f = file("agent_id = \"from-env-file\"\n");
    let cli: Cli = parse_from(
        ["pf", "daemon"],
        Some(f.path().as_os_str().to_owned()),
        Path::new("/nonexistent/pf.toml"),
        &["daemon"],
    )
    .unwrap();
    assert_eq!(daemon(cli).0, "from-env-file", "$PHONEFARM_CONFIG");
    let d = file("agent_id = \"from-default\"\n");
    let cli: Cli = parse_from(["pf", "daemon"], None, d.path(), &["daemon"]).unwrap();
    assert_eq!(
        daemon(cli).0,
        "from-default",
        "the default path when present"
    );
    let cli: Cli = parse_from(
        ["pf", "--config", f.path().to_str().unwrap(), "daemon"],
        None,
        d.path(),
        &["daemon"],
    )
    .unwrap();
    assert_eq!(
        daemon(cli).0,
        "from-env-file",
        "--config beats the default path"
    );
    let missing = parse_from::<Cli, _, _>(
        ["pf", "--config", "/nonexistent/given.toml", "daemon"],
        None,
        d.path(),
        &["daemon"],
    );
    let msg = file_error(missing);
    assert!(msg.starts_with("config /nonexistent/given.toml: "), "{msg}");
    // No file anywhere: plain clap, which wants the required option.
    let r = parse_from::<Cli, _, _>(
        ["pf", "daemon"],
        None,
        Path::new("/nonexistent/pf.toml"),
        &["daemon"],
    );
    assert!(matches!(r, Err(ConfigError::Clap(_))), "{r:?}");
}
