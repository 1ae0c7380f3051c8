//! What every new pooled connection gets: commits that wait for the server's WAL flush.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{ClientWrapper, HookError, Metrics};

/// Run on every new connection: raise `synchronous_commit` to `on` if the server's default
/// is `off` (stronger settings — `remote_write`, `remote_apply` — are left alone), so that
/// a commit that returned is on disk.
pub(super) fn durable_commits<'a>(
    client: &'a mut ClientWrapper,
    _: &'a Metrics,
) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'a>> {
    Box::pin(async move {
        client
            .batch_execute(
                "SELECT set_config('synchronous_commit', 'on', false)
                 WHERE current_setting('synchronous_commit') = 'off'",
            )
            .await
            .map_err(HookError::Backend)
    })
}
