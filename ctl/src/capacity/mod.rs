//! Capacity planning: the model ([`model`]), growth forecasts ([`forecast`]), and the
//! measured unit costs they start from (`capacity/calibration.json`, written by
//! `cargo xtask bench --calibrate` and built into pylonctl).

pub mod forecast;
pub mod model;
pub mod pods;

use std::path::Path;

use anyhow::Context;
use pylon_proto::api::capacity::Calibration;

/// The calibration committed with this source tree.
const BUILT_IN: &str = include_str!("../../../capacity/calibration.json");

/// The calibration in `file`, else the built-in one.
pub fn calibration(file: Option<&Path>) -> anyhow::Result<Calibration> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        None => serde_json::from_str(BUILT_IN).context("the built-in calibration"),
    }
}
