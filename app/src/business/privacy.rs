//! Drivers' personal data (PIPL): the retention job, an export of one driver's data, and
//! erasure.

use pylon_proto::api::revenue::{AccountExport, ExportedCard, RetentionRun};

use super::Business;
use crate::store::revenue::{EraseRefusal, PersonalData};
use crate::store::{Result, StoreError};

/// Ledger rows in an export, at most.
const EXPORT_LEDGER: u32 = 100_000;

impl Business {
    /// Applies the retention policy now: raw events and status history past their
    /// periods go, dormant accounts with empty wallets are anonymised.
    pub async fn apply_retention(&self) -> Result<RetentionRun> {
        let (events_before, status_before, dormant_before) = self.retention.cutoffs(self.now_ms());
        let (events_removed, status_removed) = self
            .store
            .purge_history(events_before, status_before)
            .await?;
        let mut accounts_erased = 0;
        if dormant_before > 0 {
            for account in self.store.dormant_accounts(dormant_before).await? {
                if self
                    .store
                    .erase_account(account, self.now_ms())
                    .await?
                    .is_ok()
                {
                    accounts_erased += 1;
                }
            }
        }
        if self.retention.gun_samples_days > 0 {
            let before = self.now_ms() - i64::from(self.retention.gun_samples_days) * 86_400_000;
            let removed = self.store.purge_samples(before).await?;
            self.metrics.retention_removed("gun_samples", removed);
        }
        if self.retention.resolved_alarms_days > 0 {
            let before =
                self.now_ms() - i64::from(self.retention.resolved_alarms_days) * 86_400_000;
            let removed = self.store.purge_alarms(before).await?;
            self.metrics.retention_removed("resolved_alarms", removed);
        }
        let metrics = &self.metrics;
        metrics.retention_removed("raw_events", events_removed);
        metrics.retention_removed("status_history", status_removed);
        metrics.retention_removed("accounts", accounts_erased);
        if events_removed + status_removed + accounts_erased > 0 {
            tracing::info!(
                events_removed,
                status_removed,
                accounts_erased,
                "retention applied"
            );
        }
        Ok(RetentionRun {
            events_removed,
            status_removed,
            accounts_erased,
        })
    }

    /// Everything stored about one driver, card numbers and VINs opened: what they may
    /// ask for (PIPL art. 45). `None`: no such account.
    pub async fn export_account(&self, id: i64) -> Result<Option<AccountExport>> {
        let Some(account) = self.store.account(id).await? else {
            return Ok(None);
        };
        let PersonalData { cards, vins } = self.store.personal_data(id).await?;
        let open = |sealed: &str| -> Result<String> {
            let vault = self.vault.as_ref().ok_or_else(|| {
                StoreError::Unavailable("no card key file: card numbers cannot be opened".into())
            })?;
            vault
                .open(sealed)
                .map_err(|e| StoreError::Corrupt(format!("a sealed value does not open: {e}")))
        };
        let cards = cards
            .iter()
            .map(|(physical, logical, added_at)| {
                Ok(ExportedCard {
                    physical: open(physical)?,
                    logical: open(logical)?,
                    added_at: *added_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let vins = vins
            .iter()
            .map(|(vin, _)| open(vin))
            .collect::<Result<Vec<_>>>()?;
        let ledger = self.store.ledger(id, EXPORT_LEDGER).await?;
        Ok(Some(AccountExport {
            account,
            cards,
            vins,
            ledger,
            exported_at: self.now_ms(),
        }))
    }

    /// Erases a driver's personal data (PIPL art. 47); refused while money is left.
    pub async fn erase_account(&self, id: i64) -> Result<std::result::Result<(), EraseRefusal>> {
        self.store.erase_account(id, self.now_ms()).await
    }
}
