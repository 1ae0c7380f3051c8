//! The little of glommio the edge uses (executors, tasks, timers), in one place, so the
//! runtime could be swapped. Socket readiness is the edge's own: see [`crate::readiness`].

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_lite::FutureExt;

pub use glommio::timer::sleep;

/// A running executor thread, watched: if it ends in failure (a panic inside glommio
/// itself, which no task wrapper sees), the process stops at once instead of running on
/// with a dead executor, whichever executor the main thread happens to be waiting for.
pub struct ExecutorThread {
    watcher: std::thread::JoinHandle<()>,
}

impl ExecutorThread {
    fn watch(index: usize, handle: glommio::ExecutorJoinHandle<()>) -> std::io::Result<Self> {
        let watcher = std::thread::Builder::new()
            .name(format!("edge-watch-{index}"))
            .spawn(move || {
                if let Err(e) = handle.join() {
                    fatal(&format!("executor {index} failed: {e}"));
                }
            })?;
        Ok(ExecutorThread { watcher })
    }

    /// Waits for the executor to finish.
    pub fn join(self) {
        let _ = self.watcher.join();
    }
}

/// Starts `count` executors, one thread each; `run(i)` builds executor `i`'s main future.
/// Pinned, executor `i` runs on CPU `first_cpu + i` (modulo the CPUs).
#[allow(clippy::too_many_arguments)]
pub fn start_executors<F, Fut>(
    count: usize,
    pin_cpus: bool,
    first_cpu: usize,
    io_memory: usize,
    ring_depth: usize,
    preempt: Duration,
    run: F,
) -> anyhow::Result<Vec<ExecutorThread>>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..count)
        .map(|i| {
            let placement = if pin_cpus {
                glommio::Placement::Fixed((first_cpu + i) % cpus)
            } else {
                glommio::Placement::Unbound
            };
            let run = run.clone();
            let handle = glommio::LocalExecutorBuilder::new(placement)
                .name(&format!("edge-exec-{i}"))
                .io_memory(io_memory)
                .ring_depth(ring_depth)
                .preempt_timer(preempt)
                .spawn(move || exit_on_panic(run(i)))
                .map_err(|e| anyhow::anyhow!("starting executor {i}: {e}"))?;
            Ok(ExecutorThread::watch(i, handle)?)
        })
        .collect()
}

/// Spawns a task on the current executor and lets it run on its own.
///
/// A panic that escapes a task is fatal for the process (see [`exit_on_panic`]): glommio
/// would otherwise unwind out of the executor's thread, and its connections would stay
/// open but never be served again. Per-connection work contains its own panics.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) {
    glommio::spawn_local(exit_on_panic(future)).detach();
}

/// Runs `future`; if it panics, logs why and stops the whole process with exit code 70, so
/// that a supervisor restarts the edge and its chargers reconnect through dispatch, rather
/// than leave an executor's sessions counted but never answered.
pub async fn exit_on_panic<T>(future: impl Future<Output = T>) -> T {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(value) => value,
        Err(panic) => {
            let thread = std::thread::current();
            fatal(&format!(
                "a task of {} panicked: {}",
                thread.name().unwrap_or("an executor"),
                panic_message(&*panic)
            ))
        }
    }
}

/// The exit code of an edge stopped because one of its executors could not go on
/// (`EX_SOFTWARE`).
pub const EXIT_EXECUTOR_FAILED: i32 = 70;

/// Stops the process because an executor cannot go on: its chargers must reconnect
/// elsewhere (through dispatch) instead of waiting on a dead thread.
pub fn fatal(why: &str) -> ! {
    let message = format!("{why}; stopping the edge so that it is restarted");
    tracing::error!("{message}");
    eprintln!("pylon-edge: {message}");
    std::process::exit(EXIT_EXECUTOR_FAILED);
}

/// The text of a panic payload, when it has one.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
