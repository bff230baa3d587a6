//! `watch DIR`: file mode as a long-running process.

use tokio::sync::watch;

use super::common::FileArgs;

/// Arguments of `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub files: FileArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<i32> {
    let mode = args.files.mode()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("stop requested; finishing the sync in flight");
        let _ = stop_tx.send(true);
    });
    crate::files::watch::watch(&mode, stop_rx).await?;
    Ok(0)
}
