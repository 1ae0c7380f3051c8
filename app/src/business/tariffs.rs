//! The billing model a pile holds (0x05/0x06, 0x09/0x0A, 0x58/0x57), derived from its
//! station's tariff when it has one; and pushing a changed tariff to a station's piles.

use std::time::Duration;

use pylon_proto::ykc::field::ByteArray;
use pylon_proto::ykc::frames::{BillingModelReply, BillingModelSet};
use pylon_proto::ykc::{Bcd, Frame, PileNo, Scaled};

use futures_util::future::join_all;

use super::{Business, BusinessError};
use crate::revenue::tariff::Tariff;

/// How long a pile has to acknowledge a pushed billing model (0x57).
const PUSH_REPLY_LIMIT: Duration = Duration::from_secs(10);

/// The model number a tariff revision goes by on the wire (4 BCD digits): the tariff id
/// and revision, each modulo 100, so a new revision is a new number to the pile.
pub fn model_no(tariff_id: i64, revision: u32) -> u16 {
    let t = u16::try_from(tariff_id.rem_euclid(100)).unwrap_or(0);
    let r = u16::try_from(revision % 100).unwrap_or(0);
    t * 100 + r
}

macro_rules! model_frame {
    ($ty:ident, $pile:expr, $no:expr, $t:expr) => {
        Frame::from($ty {
            pile_no: $pile,
            billing_model_no: Bcd::<2>::from_u64(u64::from($no)),
            sharp_energy_rate: Scaled($t.rates.sharp.electricity),
            sharp_service_rate: Scaled($t.rates.sharp.service),
            peak_energy_rate: Scaled($t.rates.peak.electricity),
            peak_service_rate: Scaled($t.rates.peak.service),
            flat_energy_rate: Scaled($t.rates.flat.electricity),
            flat_service_rate: Scaled($t.rates.flat.service),
            valley_energy_rate: Scaled($t.rates.valley.electricity),
            valley_service_rate: Scaled($t.rates.valley.service),
            loss_ratio: $t.loss_ratio,
            period_rates: ByteArray($t.slot_codes()),
        })
    };
}

/// A tariff as a billing-model frame: 0x0A (reply) or 0x58 (push).
pub fn tariff_frame(pile: PileNo, model: u16, tariff: &Tariff, push: bool) -> Frame {
    if push {
        model_frame!(BillingModelSet, pile, model, tariff)
    } else {
        model_frame!(BillingModelReply, pile, model, tariff)
    }
}

impl Business {
    /// The model number the pile should hold, and the tariff it comes from (`None`: the
    /// pile has no station tariff and uses its own billing model).
    pub(super) async fn pile_model(
        &self,
        pile: &str,
    ) -> Result<(u16, Option<Tariff>), BusinessError> {
        if let Some(by) = self.store.priced_by(pile, self.now_ms()).await? {
            return Ok((model_no(by.tariff_id, by.revision), Some(by.tariff)));
        }
        Ok((
            self.store.pile(pile).await?.map_or(1, |p| p.billing_model),
            None,
        ))
    }

    /// The 0x0A answer for a pile.
    pub(super) async fn model_reply(
        &self,
        pile_no: PileNo,
        pile: &str,
    ) -> Result<Frame, BusinessError> {
        match self.pile_model(pile).await? {
            (model, Some(tariff)) => Ok(tariff_frame(pile_no, model, &tariff, false)),
            (model, None) => self.billing_model_frame(pile, model, 0x0A).await,
        }
    }

    /// Sends each connected pile of a station its billing model (0x58) and waits for
    /// their answers (0x57); returns the piles that took it and those that did not.
    pub async fn push_station_tariff(
        &self,
        station: i64,
    ) -> Result<(Vec<String>, Vec<String>), BusinessError> {
        let Some(s) = self.store.station(station, self.now_ms()).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let connected: Vec<&String> = s
            .piles
            .iter()
            .filter(|p| self.directory.location(p).is_some())
            .collect();
        // Every pile of the station has the station's tariff: read it once.
        let Some(first) = connected.first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (model, Some(tariff)) = self.pile_model(first).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let tariff = &tariff;
        let sends: Vec<_> = connected
            .into_iter()
            .map(|pile| async move { (pile.clone(), self.send_model(pile, model, tariff).await) })
            .collect();
        let (taken, refused): (Vec<_>, Vec<_>) = join_all(sends)
            .await
            .into_iter()
            .partition(|(_, took)| *took);
        Ok((
            taken.into_iter().map(|(p, _)| p).collect(),
            refused.into_iter().map(|(p, _)| p).collect(),
        ))
    }
}

impl Business {
    /// Pushes the tariffs that took effect since the last call (assigned ahead of time)
    /// to their stations' connected piles. The first call only notes the time.
    pub async fn push_due_tariffs(&self) -> Result<(), BusinessError> {
        use std::sync::atomic::Ordering;
        let now = self.now_ms();
        let last = self.tariffs_checked.swap(now, Ordering::Relaxed);
        if last == 0 || last >= now {
            return Ok(());
        }
        for station in self.store.tariffs_taking_effect(last, now).await? {
            let (taken, refused) = self.push_station_tariff(station).await?;
            tracing::info!(
                station,
                taken = taken.len(),
                refused = refused.len(),
                "a tariff took effect: pushed to the station's piles"
            );
        }
        Ok(())
    }

    /// Sends a connected pile its station tariff's billing model (0x58) and waits for its
    /// answer (0x57): whether it took it; `None` if it has no station tariff.
    pub async fn push_pile_tariff(&self, pile: &str) -> Option<bool> {
        let (model, tariff) = match self.pile_model(pile).await {
            Ok((model, Some(tariff))) => (model, tariff),
            Ok((_, None)) => return None,
            Err(e) => {
                tracing::warn!(%pile, "reading the pile's tariff: {e}");
                return Some(false);
            }
        };
        Some(self.send_model(pile, model, &tariff).await)
    }

    /// Sends a pile a billing model (0x58); whether it took it (0x57).
    async fn send_model(&self, pile: &str, model: u16, tariff: &Tariff) -> bool {
        let Ok(pile_no) = PileNo::parse(pile) else {
            return false;
        };
        let frame = tariff_frame(pile_no, model, tariff, true);
        let answer = self.command(pile, frame, 0x57, PUSH_REPLY_LIMIT).await;
        let took = matches!(&answer, Ok(Frame::BillingModelSetReply(r)) if r.result == 1);
        if !took {
            tracing::warn!(%pile, ?answer, "a pile did not take its new billing model (0x57)");
        }
        took
    }

    /// Sends each connected pile of a station the offline cards allowed there (0x44, up
    /// to 12 a frame), and waits for each frame's answer (0x43).
    pub async fn sync_offline_cards(
        &self,
        station: i64,
    ) -> Result<Vec<pylon_proto::api::revenue::OfflineSync>, BusinessError> {
        use pylon_proto::ykc::field::Counted;
        use pylon_proto::ykc::frames::{OfflineCard, OfflineCardSync};
        let Some(vault) = self.vault.as_ref() else {
            return Err(BusinessError::Rejected(
                "no card key file is configured".into(),
            ));
        };
        let Some(s) = self.store.station(station, self.now_ms()).await? else {
            return Ok(Vec::new());
        };
        let mut cards = Vec::new();
        for (logical, physical) in self.store.station_cards(station).await? {
            let (Ok(logical), Ok(physical)) = (vault.open(&logical), vault.open(&physical)) else {
                tracing::warn!(
                    station,
                    "a stored card does not open with the card keys: skipped"
                );
                continue;
            };
            let (Ok(number), Some(bytes)) = (logical.parse::<u64>(), super::card_bytes(&physical))
            else {
                continue;
            };
            cards.push(OfflineCard {
                logical_card_no: Bcd::<8>::from_u64(number),
                physical_card_no: pylon_proto::ykc::Bytes(bytes),
            });
        }
        let mut syncs = Vec::new();
        for pile in s
            .piles
            .iter()
            .filter(|p| self.directory.location(p).is_some())
        {
            let Ok(pile_no) = PileNo::parse(pile) else {
                continue;
            };
            let frames: Vec<Frame> = cards
                .chunks(12)
                .map(|chunk| {
                    Frame::from(OfflineCardSync {
                        pile_no,
                        cards: Counted(chunk.to_vec()),
                    })
                })
                .collect();
            let sends = frames.into_iter().map(|frame| async move {
                matches!(
                    self.command(pile, frame, 0x43, PUSH_REPLY_LIMIT).await,
                    Ok(Frame::OfflineCardSyncReply(r)) if r.result == 1
                )
            });
            let stored = join_all(sends).await.into_iter().all(|ok| ok);
            syncs.push(pylon_proto::api::revenue::OfflineSync {
                pile: pile.clone(),
                cards: cards.len() as u64,
                stored,
            });
        }
        Ok(syncs)
    }
}

impl Business {
    /// Takes cards off the offline lists of the connected piles of `stations` (0x46,
    /// answered 0x45): after a card is removed from its account, or the account frozen.
    /// Returns the piles that confirmed.
    pub async fn clear_offline_cards(&self, stations: &[i64], cards: &[[u8; 8]]) -> Vec<String> {
        use pylon_proto::ykc::field::Counted;
        use pylon_proto::ykc::frames::OfflineCardClear;
        if cards.is_empty() {
            return Vec::new();
        }
        let now = self.now_ms();
        let mut piles = Vec::new();
        for station in stations {
            if let Ok(Some(s)) = self.store.station(*station, now).await {
                piles.extend(
                    s.piles
                        .into_iter()
                        .filter(|p| self.directory.location(p).is_some()),
                );
            }
        }
        let sends: Vec<_> = piles
            .iter()
            .filter_map(|pile| Some((pile, PileNo::parse(pile).ok()?)))
            .flat_map(|(pile, pile_no)| {
                cards.chunks(24).map(move |chunk| {
                    let frame = Frame::from(OfflineCardClear {
                        pile_no,
                        physical_card_nos: Counted(chunk.iter().map(|c| pylon_proto::ykc::Bytes(*c)).collect()),
                    });
                    async move {
                        let answer = self.command(pile, frame, 0x45, PUSH_REPLY_LIMIT).await;
                        let cleared = matches!(&answer, Ok(Frame::OfflineCardClearReply(r))
                            if r.results.0.iter().all(|c| c.cleared == 1));
                        if !cleared {
                            tracing::warn!(%pile, "a pile did not confirm clearing offline cards (0x45)");
                        }
                        (pile.clone(), cleared)
                    }
                })
            })
            .collect();
        let mut confirmed: Vec<String> = join_all(sends)
            .await
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(p, _)| p)
            .collect();
        confirmed.dedup();
        confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_a_new_model_number() {
        assert_eq!(model_no(3, 1), 301);
        assert_eq!(model_no(3, 2), 302);
        assert_eq!(model_no(123, 105), 2305);
        assert!(model_no(99, 99) <= 9999);
    }
}
