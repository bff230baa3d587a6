//! `watch DIR`: file mode as a long-running process.

use tokio::sync::watch;

use super::common::{FileArgs, LockArgs, SigningArgs};

/// Arguments of `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub notify: super::common::NotifyArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<i32> {
    let target = args.files.whole_repository("watch", "")?;
    let mut mode = args.files.mode(&target)?;
    mode.notifications = Some(args.files.notifications(&args.notify)?);
    // Held until the command ends: one writer per status directory.
    let _lock = args.files.lock(&target, "watch", &args.lock).await?;
    args.signing.check(&args.files, &mode, "watch")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(super::stop_on_signals(
        stop_tx,
        "finishing the sync in flight",
    ));
    crate::files::watch::watch(&mode, stop_rx).await?;
    mode.settle_notifications().await?;
    Ok(0)
}
