//! The bucket bounds of a duration histogram (`stats::TimeHistogram`): the defaults of
//! each histogram kind, or the ones a config gives it (Envoy's
//! `stats_config.histogram_bucket_settings`, native `stats.histogram_buckets`, matched
//! against the stat's name when a config is applied, never per request).
//!
//! Bounds are kept twice: in whole microseconds, which a worker compares each recorded
//! duration against, and as configured, in the histogram's unit (milliseconds, as in
//! Envoy), which `/stats` and Prometheus show.

/// A histogram's bucket upper bounds, ascending and distinct; a last bucket above them
/// counts the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    us: Box<[u64]>,
    ms: Box<[f64]>,
}

/// Bounds may not exceed this many buckets (a config mistake, not a histogram).
pub const MAX_BUCKETS: usize = 256;

impl Bounds {
    /// Bounds given in whole microseconds (the built-in defaults).
    pub fn from_us(us: &[u64]) -> Bounds {
        Bounds {
            us: us.into(),
            ms: us.iter().map(|&u| u as f64 / 1000.0).collect(),
        }
    }

    /// Bounds as a config gives them, in milliseconds: each greater than 0 and
    /// distinct, in any order (Envoy's rule); they are sorted. A bound finer than a
    /// microsecond counts from the next whole microsecond up.
    pub fn from_ms(ms: &[f64]) -> Result<Bounds, String> {
        if ms.is_empty() {
            return Err("must list at least one bucket".into());
        }
        if ms.len() > MAX_BUCKETS {
            return Err(format!("must list at most {MAX_BUCKETS} buckets"));
        }
        if let Some(bad) = ms.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
            return Err(format!("bucket {bad} must be a number greater than 0"));
        }
        let mut sorted = ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        if let Some(w) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
            let dup = w.first().copied().unwrap_or_default();
            return Err(format!("bucket {dup} is listed twice"));
        }
        let mut us: Vec<u64> = sorted
            .iter()
            .map(|m| (m * 1000.0).ceil().min(u64::MAX as f64) as u64)
            .collect();
        // Two bounds within one microsecond would name the same bucket: keep them
        // apart, so that the counts stay one per configured bound.
        for i in 1..us.len() {
            let prev = us.get(i - 1).copied().unwrap_or(0);
            if let Some(u) = us.get_mut(i) {
                if *u <= prev {
                    *u = prev.saturating_add(1);
                }
            }
        }
        Ok(Bounds {
            us: us.into(),
            ms: sorted.into(),
        })
    }

    /// The bounds in microseconds (what a duration is compared against).
    pub fn us(&self) -> &[u64] {
        &self.us
    }

    /// The bounds as configured, in milliseconds (what `/stats` shows).
    pub fn ms(&self) -> &[f64] {
        &self.ms
    }
}

/// `v` as C's `%g` (and fmt's `{:g}`) write it, which is how Envoy names a bucket in
/// `/stats` (`B0.5`, `B1`, `B3.6e+06`): six significant digits, trailing zeros cut,
/// exponent form below 1e-4 and from 1e6.
pub fn format_g(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    const PRECISION: i32 = 6;
    // The exponent after rounding to six significant digits.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, v);
    let exp: i32 = sci
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if !(-4..PRECISION).contains(&exp) {
        let (mantissa, _) = sci.rsplit_once('e').unwrap_or((&sci, ""));
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (PRECISION - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_bounds_are_sorted_checked_and_kept_apart() {
        let b = Bounds::from_ms(&[30000.0, 0.5, 5.0]).unwrap();
        assert_eq!(b.us(), &[500, 5_000, 30_000_000]);
        assert_eq!(b.ms(), &[0.5, 5.0, 30000.0]);
        let fine = Bounds::from_ms(&[0.0001, 0.0002, 0.001]).unwrap();
        assert_eq!(fine.us(), &[1, 2, 3]);
        assert!(Bounds::from_ms(&[]).is_err());
        assert!(Bounds::from_ms(&[1.0, 0.0]).is_err());
        assert!(Bounds::from_ms(&[-1.0]).is_err());
        assert!(Bounds::from_ms(&[f64::NAN]).is_err());
        assert!(Bounds::from_ms(&[2.0, 1.0, 2.0]).is_err());
        assert_eq!(Bounds::from_us(&[250, 1000]).ms(), &[0.25, 1.0]);
    }

    #[test]
    fn format_g_writes_what_c_writes() {
        for (v, want) in [
            (0.5, "0.5"),
            (1.0, "1"),
            (25.0, "25"),
            (2500.0, "2500"),
            (300000.0, "300000"),
            (600000.0, "600000"),
            (1800000.0, "1.8e+06"),
            (3600000.0, "3.6e+06"),
            (0.25, "0.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789.0, "1.23457e+08"),
            (99.5, "99.5"),
            (1234567.0, "1.23457e+06"),
            (999999.5, "1e+06"),
        ] {
            assert_eq!(format_g(v), want, "{v}");
        }
    }
}
