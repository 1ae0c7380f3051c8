//! Drivers for simulated fleets: each simulated pile starts its charges with a card of
//! its own (derived from its number), and [`provision`] gives every such card an account
//! with money, through the app service's operator API, so that the platform authorises
//! the starts (0x31) and settles the records (0x3B) against real wallets.

use std::time::Duration;

/// The card a simulated pile's driver uses: the low 32 bits of the pile number.
pub fn fleet_card(pile: u64) -> [u8; 8] {
    let low = (pile & 0xFFFF_FFFF) as u32;
    let mut card = [0u8; 8];
    card[4..].copy_from_slice(&low.to_be_bytes());
    card
}

/// The card number as operators type it: upper-case hex without the zero padding.
pub fn fleet_card_text(pile: u64) -> String {
    format!("{:X}", pile & 0xFFFF_FFFF)
}

/// The app service's operator API, with the admin token.
struct OperatorApi<'a> {
    agent: ureq::Agent,
    base: &'a str,
    token: &'a str,
}

impl<'a> OperatorApi<'a> {
    fn new(base: &'a str, token: &'a str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        OperatorApi { agent, base, token }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.agent
            .request(method, &format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token))
            .send_json(body)
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?
            .into_json()
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))
    }
}

/// Creates an account for the driver of each pile `first..first + count`, with the pile's
/// card and `fen` in the wallet. `api` is the app's operator address (`http://host:port`).
/// Returns the accounts' ids, in pile order. Large fleets are provisioned by several
/// threads at once (each call is a round trip through the control plane and the app).
pub fn provision(
    api: &str,
    token: &str,
    first: u64,
    count: u64,
    fen: i64,
) -> anyhow::Result<Vec<i64>> {
    const PER_THREAD: u64 = 250;
    let threads = count.div_ceil(PER_THREAD).clamp(1, 8);
    let chunk = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = first + t * chunk;
                let end = (start + chunk).min(first + count);
                scope.spawn(move || provision_range(api, token, start..end, fen))
            })
            .collect();
        let mut accounts = Vec::with_capacity(count as usize);
        for worker in workers {
            let ids = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a provisioning thread panicked"))??;
            accounts.extend(ids);
        }
        Ok(accounts)
    })
}

fn provision_range(
    api: &str,
    token: &str,
    piles: std::ops::Range<u64>,
    fen: i64,
) -> anyhow::Result<Vec<i64>> {
    let api = OperatorApi::new(api, token);
    let call = |path: &str, body: serde_json::Value| api.call("POST", path, body);
    let mut accounts = Vec::new();
    for pile in piles {
        let account = call(
            "/v1/accounts",
            serde_json::json!({"name": format!("driver of {pile:014}")}),
        )?;
        let id = account["id"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no account id in {account}"))?;
        call(
            &format!("/v1/accounts/{id}/cards"),
            serde_json::json!({"physical": fleet_card_text(pile), "logical": format!("{}", pile % 10_000_000_000)}),
        )?;
        call(
            &format!("/v1/accounts/{id}/top-up"),
            serde_json::json!({"amount": fen, "reason": "simulated fleet"}),
        )?;
        accounts.push(id);
    }
    Ok(accounts)
}

/// A station named `name` holding `piles`, priced by a time-of-use tariff (valley
/// 0.40, flat 0.80, peak 1.20, sharp 1.50 yuan per kWh, plus 0.40 service fee) in force
/// from the epoch. Returns the station's id.
pub fn station_with_tariff(
    api: &str,
    token: &str,
    name: &str,
    piles: impl IntoIterator<Item = u64>,
) -> anyhow::Result<i64> {
    let api = OperatorApi::new(api, token);
    let call = |method: &str, path: &str, body: serde_json::Value| api.call(method, path, body);
    let station = call("POST", "/v1/stations", serde_json::json!({"name": name}))?["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no station id"))?;
    let rate = |yuan_e5: u32| serde_json::json!({"electricity": yuan_e5, "service": 40_000});
    let tariff = call(
        "POST",
        "/v1/tariffs",
        serde_json::json!({
            "name": format!("{name} time of use"),
            "rates": {"sharp": rate(150_000), "peak": rate(120_000), "flat": rate(80_000), "valley": rate(40_000)},
            "schedule": [
                {"from": "00:00", "period": "valley"},
                {"from": "08:00", "period": "flat"},
                {"from": "10:00", "period": "peak"},
                {"from": "12:00", "period": "flat"},
                {"from": "18:00", "period": "sharp"},
                {"from": "21:00", "period": "flat"},
                {"from": "23:00", "period": "valley"},
            ],
        }),
    )?["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no tariff id"))?;
    call(
        "POST",
        &format!("/v1/stations/{station}/tariff"),
        serde_json::json!({"tariff_id": tariff, "valid_from": 0}),
    )?;
    for pile in piles {
        call(
            "PUT",
            &format!("/v1/piles/{pile:014}/station"),
            serde_json::json!({"station_id": station}),
        )?;
    }
    Ok(station)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pile_has_its_own_card() {
        assert_eq!(fleet_card(32_010_200_000_001)[..4], [0, 0, 0, 0]);
        assert_ne!(
            fleet_card(32_010_200_000_001),
            fleet_card(32_010_200_000_002)
        );
        let pile = 10_000_000_000_123u64;
        let bytes = fleet_card(pile);
        assert_eq!(
            hex::encode_upper(bytes).trim_start_matches('0'),
            fleet_card_text(pile)
        );
    }
}
