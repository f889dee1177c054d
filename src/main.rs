//! The `bro` binary: parse the command line, set up logging, dispatch. Errors become one line
//! on stderr and exit code 1; usage errors exit with 2 (clap).

use std::process::ExitCode;

use clap::Parser;

use bro::cli::{self, Cli, Command};
use bro::paths::Paths;

fn main() -> ExitCode {
    // `COMPLETE=bash bro -- …` is a shell asking for completions: answer and exit.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let cli = Cli::parse();
    let daemon = matches!(&cli.command, Command::Daemon(d) if d.action.is_none());
    // The benchmark's browsers (raw launches, Playwright's) run as the daemon's do.
    let bench = matches!(&cli.command, Command::Bench(_));
    let level = match (daemon, cli.verbose) {
        (true, 0) => "info",
        (false, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    // The daemon sets up its logging once its settings are read: they may add trace export.
    if !daemon {
        bro::telemetry::init(level);
    }
    // Capabilities are per thread, and threads inherit them: this one, before the runtime
    // starts any, leaves no thread able to start a browser that could raise its priority.
    // The daemon, for its browsers; the benchmark, so that the launches it compares bro's
    // with (its raw launches, Playwright's own) are on the same terms, as they are for a user
    // who is not root. An `RLIMIT_NICE` above 0 would let them too, for any user: it goes to 0.
    let boost_kept = (daemon || bench) && !bro::worker::process::no_priority_boost_for_children();
    let runtime = if daemon {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    if boost_kept {
        eprintln!("warning: could not keep the browsers from raising their threads' priority");
    }
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli, level)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, level: &str) -> anyhow::Result<()> {
    let paths = Paths::from_env()?;
    match cli.command {
        Command::Daemon(cmd) => cli::daemon::run(paths, *cmd, level).await,
        Command::Session(cmd) => cli::session::run(paths, cmd).await,
        Command::Cluster(cmd) => cli::cluster::run(paths, cmd).await,
        Command::Doctor { args, json } => cli::doctor::run(paths, *args, json).await,
        Command::Tui => bro::tui::run(paths).await,
        Command::Bench(args) => cli::bench::run(args).await,
        Command::Completions { shell } => {
            use std::io::Write;
            std::io::stdout().write_all(&cli::completion_script(shell))?;
            Ok(())
        }
    }
}
