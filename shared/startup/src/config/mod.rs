//! Configuration files for `clap` parsers.
//!
//! A file is TOML, flat: each key is an option's long flag without the dashes, `-` written `_`
//! (`--nats-url` is `nats_url`). A value is a string, number or boolean; options that repeat
//! take an array. The file's values become the options' defaults, so the precedence is
//! **flag > environment variable > file > built-in default**: clap reads the flag, then the
//! environment, and only then falls back to the default the file set.
//!
//! Which file: `--config FILE`, else `$PHONEFARM_CONFIG`, else the binary's default path
//! (`/etc/phonefarm/<binary>.toml`) when it exists. An unknown key, a value of the wrong kind
//! or one the option refuses, and a TOML syntax error are each a one-line error naming the
//! file and the key (or line).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::ArgAction;
use clap::error::ContextKind;
use clap::{Arg, Command, Parser};

/// Why the command line or the configuration file was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// Clap's own outcome: a bad flag, or `--help` / `--version` (print and exit).
    Clap(clap::Error),
    /// The configuration file: one line naming the file and the key or line.
    File(String),
}

impl ConfigError {
    /// Prints the error (or the help) and exits: status 2 for a bad file, as clap does for a
    /// bad flag.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Clap(e) => e.exit(),
            ConfigError::File(msg) => {
                eprintln!("error: {msg}");
                std::process::exit(2)
            }
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Clap(e) => write!(f, "{}", e.to_string().trim_end()),
            ConfigError::File(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable naming the configuration file (after `--config`).
pub const CONFIG_ENV: &str = "PHONEFARM_CONFIG";

/// Parses the process's arguments with the configuration file applied. `sections` names the
/// subcommands whose options a file may set besides the root's (global) ones, e.g.
/// `["daemon", "doctor"]`; a key is applied to every option of that name in the tree.
pub fn parse<P: Parser>(default_path: &Path, sections: &[&str]) -> Result<P, ConfigError> {
    parse_from(
        std::env::args_os(),
        std::env::var_os(CONFIG_ENV),
        default_path,
        sections,
    )
}

/// [`parse`] over given arguments and `$PHONEFARM_CONFIG` value.
pub fn parse_from<P, I, T>(
    args: I,
    config_env: Option<OsString>,
    default_path: &Path,
    sections: &[&str],
) -> Result<P, ConfigError>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = P::command();
    if let Some(path) = config_path(&args, config_env, default_path) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::File(format!("config {}: {e}", path.display())))?;
        let values = check(&cmd, sections, &path, &text)?;
        cmd = apply(cmd, &values);
    }
    let matches = cmd.try_get_matches_from(args).map_err(ConfigError::Clap)?;
    P::from_arg_matches(&matches).map_err(ConfigError::Clap)
}

/// `--config FILE` or `--config=FILE` before any `--`, else the environment's, else the default
/// path if a file is there.
fn config_path(
    args: &[OsString],
    config_env: Option<OsString>,
    default_path: &Path,
) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    if let Some(p) = config_env.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    default_path.is_file().then(|| default_path.to_path_buf())
}

/// The file's values by flag name, each checked against the options it sets.
type Values = Vec<(String, Vec<&'static str>)>;

fn check(cmd: &Command, sections: &[&str], path: &Path, text: &str) -> Result<Values, ConfigError> {
    let file = path.display();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = e.message().lines().next().unwrap_or("not TOML").to_string();
        match line {
            Some(n) => ConfigError::File(format!("config {file}, line {n}: {msg}")),
            None => ConfigError::File(format!("config {file}: {msg}")),
        }
    })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let err = |why: String| ConfigError::File(format!("config {file}: key `{key}`: {why}"));
        let mut known = settable(cmd).any(|a| a.get_long() == Some(&long));
        for name in sections {
            if let Some(sub) = cmd.find_subcommand(name) {
                known |= settable(sub).any(|a| a.get_long() == Some(&long));
            }
        }
        if !known || key.contains('-') {
            return Err(err(
                "unknown key (keys are the long flags with `_` for `-`, e.g. nats_url)".into(),
            ));
        }
        let values = scalars(value).map_err(err)?;
        let mut all = Vec::new();
        visit(cmd, &mut |arg| {
            if arg.get_long() == Some(&long) {
                all.push(arg.clone());
            }
        });
        let mut split = Vec::new();
        for arg in &all {
            let repeats = matches!(arg.get_action(), ArgAction::Append);
            if values.len() != 1 && !repeats {
                return Err(err("takes one value, not an array".into()));
            }
            split = values
                .iter()
                .flat_map(|v| match arg.get_value_delimiter() {
                    Some(d) => v.split(d).map(str::to_string).collect(),
                    None => vec![v.clone()],
                })
                .collect();
            for v in &split {
                validate(arg, v).map_err(&err)?;
            }
        }
        let leaked = split
            .into_iter()
            .map(|v| &*Box::leak(v.into_boxed_str()))
            .collect();
        out.push((long, leaked));
    }
    Ok(out)
}

/// Options a file may set: named, taking a value or a boolean; not help, version or config.
fn settable(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        !a.is_positional()
            && !matches!(a.get_long(), Some("help" | "version" | "config") | None)
            && matches!(
                a.get_action(),
                ArgAction::Set | ArgAction::Append | ArgAction::SetTrue | ArgAction::SetFalse
            )
    })
}

fn visit(cmd: &Command, f: &mut dyn FnMut(&Arg)) {
    settable(cmd).for_each(&mut *f);
    for sub in cmd.get_subcommands() {
        visit(sub, f);
    }
}

fn scalars(value: &toml::Value) -> Result<Vec<String>, String> {
    fn one(v: &toml::Value) -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            toml::Value::Datetime(d) => Ok(d.to_string()),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                Err("expected a string, number, boolean, or an array of them".into())
            }
        }
    }
    match value {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}

/// Runs one value through the option's own parser (types, ranges, possible values).
fn validate(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Arg::new("value")
        .long("value")
        .action(ArgAction::Set)
        .num_args(1)
        .allow_hyphen_values(true)
        .value_parser(arg.get_value_parser().clone());
    let result = Command::new("config")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([OsString::from(format!("--value={value}"))]);
    let Err(e) = result else { return Ok(()) };
    let mut why = format!("invalid value {value:?}");
    if let Some(source) = std::error::Error::source(&e) {
        why.push_str(&format!(": {source}"));
    }
    if let Some(clap::error::ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        why.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    Err(why)
}

/// The file's values as the options' defaults, everywhere in the tree (globals propagate from
/// the root when clap builds the command). An option the file sets is no longer required.
fn apply(cmd: Command, values: &Values) -> Command {
    let cmd = cmd.mut_args(|a| {
        match values
            .iter()
            .find(|(long, _)| a.get_long() == Some(long.as_str()))
        {
            Some((_, v)) if !a.is_positional() => {
                a.required(false).default_values(v.iter().copied())
            }
            _ => a,
        }
    });
    cmd.mut_subcommands(|sub| apply(sub, values))
}

#[cfg(test)]
mod tests;
