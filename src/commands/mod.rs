//! The subcommands' logic; `main.rs` only parses arguments and calls these.

/// Writes results to stdout. A reader that went away (`plan | head`) is not an error:
/// the rest is dropped quietly instead of panicking as `print!` would.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to standard output: {e}");
    }
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::write_stdout(&format!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::commands::write_stdout(&format!("{}\n", format!($($arg)*))) };
}

pub mod apply;
pub mod cli;
pub mod codeowners;
pub mod common;
pub mod completions;
pub mod confirm;
pub mod controller;
pub mod crds;
pub mod demo;
pub mod export;
pub mod people;
pub mod plan;
pub mod plugin;
pub mod request_cluster;
pub mod review;
pub mod simulator;
pub mod state;
pub mod validate;
pub mod watch;

/// Turns `stop` true at the first Ctrl-C or SIGTERM (the command finishes what is in
/// flight, `finishing` says what), and exits the process at once at the second: a person
/// who interrupts twice does not want to wait.
pub async fn stop_on_signals(stop: tokio::sync::watch::Sender<bool>, finishing: &'static str) {
    shutdown_signal().await;
    tracing::warn!("stop requested; {finishing} (interrupt again to exit without waiting)");
    let _ = stop.send(true);
    shutdown_signal().await;
    tracing::error!("two interrupts: exiting without waiting");
    std::process::exit(INTERRUPTED);
}

/// The exit code of a process ended by a second interrupt (128 + SIGINT, as shells say).
pub const INTERRUPTED: i32 = 130;

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
