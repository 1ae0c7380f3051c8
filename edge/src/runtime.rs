//! The little of glommio the edge uses (executors, tasks, timers), in one place, so the
//! runtime could be swapped. Socket readiness is the edge's own: see [`crate::readiness`].

use std::future::Future;
use std::time::Duration;

pub use glommio::timer::sleep;

/// A running executor thread.
pub struct ExecutorThread {
    index: usize,
    handle: glommio::ExecutorJoinHandle<()>,
}

impl ExecutorThread {
    /// Waits for the executor to finish.
    pub fn join(self) {
        if let Err(e) = self.handle.join() {
            tracing::error!(executor = self.index, "executor failed: {e}");
        }
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
                .spawn(move || run(i))
                .map_err(|e| anyhow::anyhow!("starting executor {i}: {e}"))?;
            Ok(ExecutorThread { index: i, handle })
        })
        .collect()
}

/// Spawns a task on the current executor and lets it run on its own.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) {
    glommio::spawn_local(future).detach();
}
