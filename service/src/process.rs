//! The outline every tokio service's process shares: a runtime, the server running until
//! the first signal, and an exit status that says how it ended.

use std::future::Future;

/// Runs `serve(shutdown)` on a multi-threaded tokio runtime of `workers` threads named
/// `name`; `shutdown` resolves at the first SIGTERM or SIGINT (a second stops at once).
pub fn serve_until_signalled<F, Fut>(
    name: &'static str,
    workers: usize,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = crate::signals::drain_on_first_signal(name)?;
        serve(Box::pin(shutdown)).await
    })
}

/// A TCP listener on `addr`; the error says what it was for (`what`) and where.
pub async fn listen(
    addr: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for {what} on {addr}"))
}

/// The exit status of a process that ran `result`: success, or the error on stderr
/// (prefixed with the program's name) and failure.
pub fn exit_status(name: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
