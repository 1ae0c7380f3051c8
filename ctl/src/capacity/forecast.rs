//! Growth of the piles online, fitted to the store's history, and when it meets the
//! deployment's capacity. Pure: samples in, figures out.

use serde::Serialize;

/// How the growth was fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Model {
    /// `online = a + b * day`.
    Linear { a: f64, b: f64 },
    /// `online = exp(a + b * day)`.
    Exponential { a: f64, b: f64 },
}

impl Model {
    pub fn at(&self, day: f64) -> f64 {
        match *self {
            Model::Linear { a, b } => a + b * day,
            Model::Exponential { a, b } => (a + b * day).exp(),
        }
    }

    /// The first day on which the fit reaches `level` (None: it never does).
    fn day_reaching(&self, level: f64) -> Option<f64> {
        match *self {
            Model::Linear { a, b } if b > 0.0 => Some((level - a) / b),
            Model::Exponential { a, b } if b > 0.0 && level > 0.0 => Some((level.ln() - a) / b),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Model::Linear { .. } => "linear",
            Model::Exponential { .. } => "exponential",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub samples: usize,
    /// Days the history covers.
    pub span_days: f64,
    pub online_now: f64,
    pub model: Model,
    /// Growth over the next day, from the fit.
    pub per_day: f64,
    pub horizon_days: f64,
    pub online_at_horizon: f64,
    pub capacity: f64,
    /// Days from the last sample until the fit reaches the capacity (0: already there;
    /// None: not while the fit grows no more).
    pub runs_out_in_days: Option<f64>,
}

/// Least squares of `y = a + b x`; None without two distinct x.
fn line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx <= f64::EPSILON {
        return None;
    }
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

fn squared_error(model: &Model, points: &[(f64, f64)]) -> f64 {
    points.iter().map(|(x, y)| (model.at(*x) - y).powi(2)).sum()
}

/// Fits `samples` (day, piles online), oldest first, linearly and exponentially, keeps
/// the closer fit, and projects it `horizon_days` past the last sample and to `capacity`.
pub fn forecast(
    samples: &[(f64, f64)],
    capacity: f64,
    horizon_days: f64,
) -> Result<Forecast, String> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err("the store has no fleet history yet (it is sampled hourly)".into());
    };
    let linear = line(samples)
        .map(|(a, b)| Model::Linear { a, b })
        .ok_or("the history covers one moment only: wait for more samples")?;
    let exponential = samples
        .iter()
        .all(|(_, y)| *y > 0.0)
        .then(|| {
            line(
                &samples
                    .iter()
                    .map(|(x, y)| (*x, y.ln()))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .map(|(a, b)| Model::Exponential { a, b });
    let model = match exponential {
        Some(e) if squared_error(&e, samples) < squared_error(&linear, samples) => e,
        _ => linear,
    };
    let now = last.0;
    let runs_out_in_days = if last.1 >= capacity {
        Some(0.0)
    } else {
        model.day_reaching(capacity).map(|day| (day - now).max(0.0))
    };
    Ok(Forecast {
        samples: samples.len(),
        span_days: last.0 - first.0,
        online_now: last.1,
        model,
        per_day: model.at(now + 1.0) - model.at(now),
        horizon_days,
        online_at_horizon: model.at(now + horizon_days),
        capacity,
        runs_out_in_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_growth_is_linear_and_runs_out_on_the_right_day() {
        // 1,000 piles online, 50 more a day, for 60 days.
        let samples: Vec<(f64, f64)> = (0..60)
            .map(|d| (f64::from(d), 1000.0 + 50.0 * f64::from(d)))
            .collect();
        let f = forecast(&samples, 10_000.0, 365.0).unwrap();
        assert_eq!(f.model.name(), "linear");
        assert!((f.per_day - 50.0).abs() < 1e-6);
        // 3,950 now; 6,050 to go at 50 a day.
        assert!((f.runs_out_in_days.unwrap() - 121.0).abs() < 1e-6);
        assert!((f.online_at_horizon - (3950.0 + 50.0 * 365.0)).abs() < 1e-6);
    }

    #[test]
    fn compound_growth_is_exponential() {
        // 1 % a day.
        let samples: Vec<(f64, f64)> = (0..90)
            .map(|d| (f64::from(d), 2000.0 * 1.01f64.powi(d)))
            .collect();
        let f = forecast(&samples, 1_000_000.0, 30.0).unwrap();
        assert_eq!(f.model.name(), "exponential");
        let now = 2000.0 * 1.01f64.powi(89);
        let days = (1_000_000.0f64 / now).ln() / 1.01f64.ln();
        assert!((f.runs_out_in_days.unwrap() - days).abs() < 0.01);
    }

    #[test]
    fn a_shrinking_or_full_fleet_and_thin_history_say_so() {
        let shrinking: Vec<(f64, f64)> = (0..10)
            .map(|d| (f64::from(d), 500.0 - f64::from(d)))
            .collect();
        assert_eq!(
            forecast(&shrinking, 1000.0, 30.0).unwrap().runs_out_in_days,
            None
        );
        let full = [(0.0, 900.0), (1.0, 1200.0)];
        assert_eq!(
            forecast(&full, 1000.0, 30.0).unwrap().runs_out_in_days,
            Some(0.0)
        );
        assert!(forecast(&[], 1000.0, 30.0).is_err());
        assert!(forecast(&[(3.0, 10.0), (3.0, 12.0)], 1000.0, 30.0).is_err());
    }
}
