//! Evaluates an access log's filter (`config::access_log_filter`) on a finished stream,
//! before any formatting: a stream the filter refuses costs a few comparisons.

use crate::config::access_log_filter::LogFilter;

use super::stream_info::StreamInfo;

/// True when the stream gets a line.
pub fn passes(f: &LogFilter, r: &StreamInfo) -> bool {
    match f {
        LogFilter::Status(op, v) => op.holds(u64::from(r.status), *v),
        LogFilter::Duration(op, v) => op.holds(r.duration.as_millis() as u64, *v),
        LogFilter::NotHealthCheck => true,
        LogFilter::ResponseFlags(want) => {
            let flags = r.flags();
            if want.is_empty() {
                flags.iter().any(Option::is_some)
            } else {
                want.iter().any(|f| flags.contains(&Some(*f)))
            }
        }
        LogFilter::Sample {
            numerator,
            denominator,
        } => fastrand::u64(0..*denominator) < *numerator,
        LogFilter::And(v) => v.iter().all(|f| passes(f, r)),
        LogFilter::Or(v) => v.iter().any(|f| passes(f, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access_log_filter::Cmp;
    use crate::http::flags::ResponseFlag;
    use std::time::Duration;

    #[test]
    fn filters() {
        let r = StreamInfo {
            status: 503,
            flag: Some(ResponseFlag::UpstreamConnectFailure),
            duration: Duration::from_millis(20),
            ..Default::default()
        };
        assert!(passes(&LogFilter::Status(Cmp::Ge, 500), &r));
        assert!(!passes(&LogFilter::Status(Cmp::Eq, 200), &r));
        assert!(passes(&LogFilter::Duration(Cmp::Le, 20), &r));
        assert!(passes(&LogFilter::ResponseFlags(vec![]), &r));
        assert!(!passes(
            &LogFilter::ResponseFlags(vec![ResponseFlag::NoRoute]),
            &r
        ));
        let none = LogFilter::Sample {
            numerator: 0,
            denominator: 100,
        };
        let all = LogFilter::Sample {
            numerator: 100,
            denominator: 100,
        };
        assert!(!passes(&none, &r));
        assert!(passes(&all, &r));
        assert!(passes(&LogFilter::Or(vec![none.clone(), all.clone()]), &r));
        assert!(!passes(&LogFilter::And(vec![none, all]), &r));
    }
}
