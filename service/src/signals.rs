//! Stopping, the same way in every process: the first SIGTERM or SIGINT asks for a drain
//! (stop taking new work, finish what is running), the second stops at once.

use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Watches SIGTERM and SIGINT on a thread of its own: `on_first` runs at the first signal,
/// `on_second` at every later one. Neither may block for long.
pub fn watch(
    mut on_first: impl FnMut(i32) + Send + 'static,
    mut on_second: impl FnMut(i32) + Send + 'static,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for signal in signals.forever() {
                if seen {
                    on_second(signal);
                } else {
                    seen = true;
                    on_first(signal);
                }
            }
        })?;
    Ok(())
}

/// How long a process stopped by a second signal waits for its last words (logs, a
/// closing frame) before it exits.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Exits with status 1 after [`STOP_GRACE`], from a thread of its own, so the caller can
/// still tell its parts to stop.
pub fn exit_soon() {
    std::thread::spawn(|| {
        std::thread::sleep(STOP_GRACE);
        std::process::exit(1);
    });
}

/// For tokio services: resolves at the first SIGTERM or SIGINT (the caller drains and
/// returns); a second signal ends the process at once with status 1.
pub fn drain_on_first_signal(
    name: &'static str,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    watch(
        move |signal| {
            tracing::info!(signal, "{name}: draining (a second signal stops at once)");
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        },
        move |signal| {
            tracing::warn!(signal, "{name}: second signal, stopping now");
            std::process::exit(1);
        },
    )?;
    Ok(async move {
        let _ = rx.await;
    })
}
