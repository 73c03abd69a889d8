//! Process signals → one shutdown future.
//!
//! SIGTERM is what orchestrators (systemd, Kubernetes, `scripts/stack down`) send to ask for a graceful
//! drain; SIGINT is Ctrl-C. Either resolves [`signal`]. Each service then stops accepting work, finishes
//! or hands back what it holds, and exits within its deadline.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
