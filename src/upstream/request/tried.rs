//! How one try of the attempt loop failed (`request::run`), and what the loop may do
//! with it: send the request again, and whether the retry policy already decided.

use crate::http::failure::Failure;

/// How one try failed before a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tried {
    pub failure: Failure,
    /// Nothing of a response arrived and the request can be sent again as it was (no
    /// request body was taken from the client, and the method allows it).
    pub replayable: bool,
    /// The request can be sent again as it was (its body, if any, is whole at hand or
    /// kept whole for a retry), whatever the method: what a retry policy needs.
    pub resend: bool,
    /// The try got a response head the retry policy already chose to retry.
    pub judged: bool,
    /// An HTTP/2 upstream refused the stream (RST_STREAM REFUSED_STREAM, or a GOAWAY
    /// that left it unprocessed): Envoy's `RemoteRefusedStreamReset`, which
    /// `refused-stream` retries.
    pub refused: bool,
    /// The retry policy already decided this failure (`Attempt::retry_loss`): with
    /// `judged`, a retry; without, none. It is not asked again.
    pub settled: bool,
    /// The request body outgrew the retry buffer while the decided retry waited: no
    /// retry is made, and the client gets Envoy's `507`.
    pub overflowed: bool,
}

impl Tried {
    pub fn fatal(failure: Failure) -> Tried {
        Tried {
            failure,
            replayable: false,
            resend: false,
            judged: false,
            refused: false,
            settled: false,
            overflowed: false,
        }
    }

    /// A failure after which the request could go again (`resend`).
    pub fn failed(failure: Failure, replayable: bool, resend: bool) -> Tried {
        Tried {
            failure,
            replayable,
            resend,
            judged: false,
            refused: false,
            settled: false,
            overflowed: false,
        }
    }

    /// An HTTP/2 stream the upstream refused before processing it (`resend`: the
    /// request can go again as it was).
    pub fn refused(resend: bool) -> Tried {
        Tried {
            refused: true,
            ..Tried::failed(Failure::ConnectionTermination, false, resend)
        }
    }

    /// A response head the retry policy retries.
    pub fn retry_response() -> Tried {
        Tried {
            failure: Failure::ConnectionTermination,
            replayable: false,
            resend: true,
            judged: true,
            refused: false,
            settled: false,
            overflowed: false,
        }
    }

    /// The upstream went away while the body was being sent, and the retry policy
    /// (asked then, `Attempt::retry_loss`) decided: `retried`, the body was read whole
    /// into its copy for the retry; `overflowed`, it outgrew the copy's limit first.
    pub fn lost_mid_body(retried: bool, overflowed: bool) -> Tried {
        Tried {
            failure: Failure::ConnectionTermination,
            replayable: false,
            resend: retried && !overflowed,
            judged: retried,
            refused: false,
            settled: true,
            overflowed,
        }
    }
}
