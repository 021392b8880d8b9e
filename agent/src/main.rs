//! `phonefarm-agent`: parses the command line, initialises tracing and runs the CLI.

use phonefarm_agent::cli::{Cli, run};

// The system allocator, on purpose (unlike the coordinator): with mimalloc the agents of the
// e2e dispatch bench spent more CPU, mostly in the kernel, and the burst's p99 rose (three runs
// each, 2026-11-29: p99 203-265 ms against 148-154 ms; bench and children 10.4-12.2 against
// 9.7-10.1 CPU seconds).

fn main() {
    let cli = phonefarm_startup::parse::<Cli>(
        std::path::Path::new("/etc/phonefarm/agent.toml"),
        &["daemon", "doctor"],
    )
    .unwrap_or_else(|e| e.exit());
    // The daemon logs at info (phones online and offline, runs started and finished, NATS
    // connections: journald keeps them); one-shot commands print their result and warnings
    // only. RUST_LOG overrides both.
    let default_filter = match cli.command {
        phonefarm_agent::cli::Command::Daemon(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        // Colours only on a terminal: journald and log files get plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    drop(rt);
    std::process::exit(code);
}
