//! Pure HTTP rules the transport applies: which statuses are worth retrying,
//! how `Content-Range` and `Retry-After` read, and which validator to resume
//! with. No I/O: strings in, typed values out, never a panic on any input.

use std::time::Duration;

use crate::{error::ErrorClass, time::UtcTime, types::Validator};

/// Transient or fatal, for an HTTP status that is not a success.
///
/// Transient: 408, 409, 429 and every 5xx but 501 and 505 (the server may
/// answer better later). Fatal: every other status, 4xx included (asking
/// again will not help). Successes and redirects never reach here.
pub fn status_class(status: u16) -> ErrorClass {
    match status {
        408 | 409 | 429 => ErrorClass::Transient,
        501 | 505 => ErrorClass::Fatal,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// A parsed `Content-Range` header (RFC 9110 §14.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (`complete` is `None` for `*`).
    Bytes {
        /// First byte position.
        first: u64,
        /// Last byte position (inclusive), `>= first`.
        last: u64,
        /// The complete length, if known.
        complete: Option<u64>,
    },
    /// `bytes */complete`, sent with 416.
    Unsatisfied {
        /// The complete length.
        complete: u64,
    },
}

/// Parses a `Content-Range` value; `None` for anything malformed, including
/// `last < first` and a complete length not past `last`.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?;
    // At least one space between the unit and the range (RFC 9110: SP).
    let rest = rest.strip_prefix(' ')?.trim_start();
    let (range, complete) = rest.split_once('/')?;
    let complete = match complete.trim() {
        "*" => None,
        n => Some(digits(n)?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied {
            complete: complete?,
        });
    }
    let (first, last) = range.trim().split_once('-')?;
    let (first, last) = (digits(first)?, digits(last)?);
    if last < first || complete.is_some_and(|c| c <= last) {
        return None;
    }
    Some(ContentRange::Bytes {
        first,
        last,
        complete,
    })
}

/// A non-empty run of ASCII digits that fits in a u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The delay a `Retry-After` value asks for at `now`: delay-seconds or an
/// HTTP date (a date in the past means no delay). `None` if malformed.
pub fn parse_retry_after(value: &str, now: UtcTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = digits(value) {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.saturating_since(now))
}

/// What to do with a 416 (Range Not Satisfiable) answer to a resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsatisfiable {
    /// `Content-Range: bytes */N` with N the recorded size, asked at offset
    /// N: every byte is already here; the file is transferred.
    Finished,
    /// Any other 416, the first time: restart the file from zero.
    Restart,
    /// Any other 416 after a restart already: fatal.
    Fatal,
}

/// The rule for a 416 answer to `Range: bytes=offset-`, given the size the
/// file's record holds, the `Content-Range` header, and whether this attempt
/// already restarted once because of a 416.
pub fn unsatisfiable(
    offset: u64,
    recorded_size: Option<u64>,
    content_range: Option<&str>,
    restarted_before: bool,
) -> Unsatisfiable {
    let complete = match content_range.and_then(parse_content_range) {
        Some(ContentRange::Unsatisfied { complete }) => Some(complete),
        _ => None,
    };
    if offset > 0 && complete == Some(offset) && recorded_size == Some(offset) {
        Unsatisfiable::Finished
    } else if restarted_before {
        Unsatisfiable::Fatal
    } else {
        Unsatisfiable::Restart
    }
}

/// An HTTP date (IMF-fixdate, or the obsolete RFC 850 and asctime forms).
pub fn parse_http_date(value: &str) -> Option<UtcTime> {
    let time = httpdate::parse_http_date(value.trim()).ok()?;
    let millis = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(UtcTime::from_unix_millis(i64::try_from(millis).ok()?))
}

/// The validator to resume with: a strong ETag, else Last-Modified. A weak
/// ETag (`W/"..."`) cannot be used with If-Range (RFC 9110 §13.1.5), so it
/// falls back to Last-Modified.
pub fn validator(etag: Option<&str>, last_modified: Option<&str>) -> Option<Validator> {
    let etag = etag.map(str::trim).filter(|e| is_strong_etag(e));
    if let Some(etag) = etag {
        return Some(Validator::ETag(etag.to_owned()));
    }
    last_modified
        .map(str::trim)
        .filter(|lm| parse_http_date(lm).is_some())
        .map(|lm| Validator::LastModified(lm.to_owned()))
}

/// `"..."` with no quote inside and no `W/` prefix.
fn is_strong_etag(tag: &str) -> bool {
    tag.len() >= 2
        && tag.starts_with('"')
        && tag.ends_with('"')
        && !tag[1..tag.len() - 1].contains('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_the_bits_rule() {
        for (status, class) in [
            (400, ErrorClass::Fatal),
            (401, ErrorClass::Fatal),
            (404, ErrorClass::Fatal),
            (408, ErrorClass::Transient),
            (409, ErrorClass::Transient),
            (410, ErrorClass::Fatal),
            (429, ErrorClass::Transient),
            (500, ErrorClass::Transient),
            (501, ErrorClass::Fatal),
            (503, ErrorClass::Transient),
            (505, ErrorClass::Fatal),
            (599, ErrorClass::Transient),
        ] {
            assert_eq!(status_class(status), class, "{status}");
        }
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some(ContentRange::Bytes {
                first: 100,
                last: 199,
                complete: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 9,
                complete: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000"),
            Some(ContentRange::Unsatisfied { complete: 1000 })
        );
        for bad in [
            "",
            "bytes",
            "bytes 5-4/10",
            "bytes 0-9/9",
            "bytes -1-9/10",
            "bytes 0-9",
            "items 0-9/10",
            "bytes */*",
            "bytes 0-99999999999999999999/1",
            "bytes +1-9/10",
            "bytes0-9/10",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_416_finishes_only_when_everything_is_already_here() {
        use Unsatisfiable::{Fatal, Finished, Restart};
        let cases = [
            // offset, recorded size, Content-Range, restarted before
            ((100, Some(100), Some("bytes */100"), false), Finished),
            ((100, Some(100), Some("bytes */100"), true), Finished),
            // the server's size differs from the record
            ((100, Some(100), Some("bytes */90"), false), Restart),
            // the record's size differs from the offset
            ((100, Some(120), Some("bytes */100"), false), Restart),
            // no size on record, no header, a malformed header
            ((100, None, Some("bytes */100"), false), Restart),
            ((100, Some(100), None, false), Restart),
            ((100, Some(100), Some("bytes 0-9/100"), false), Restart),
            ((100, Some(100), Some("garbage"), true), Fatal),
            ((0, Some(0), Some("bytes */0"), false), Restart),
        ];
        for ((offset, size, header, restarted), want) in cases {
            assert_eq!(
                unsatisfiable(offset, size, header, restarted),
                want,
                "{offset} {size:?} {header:?} {restarted}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = UtcTime::from_unix_millis(1_445_412_480_000); // 2015-10-21T07:28:00Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn validators_prefer_strong_etags() {
        let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            validator(Some("\"abc\""), Some(lm)),
            Some(Validator::ETag("\"abc\"".into()))
        );
        assert_eq!(
            validator(Some("W/\"abc\""), Some(lm)),
            Some(Validator::LastModified(lm.into()))
        );
        assert_eq!(validator(Some("abc"), None), None);
        assert_eq!(validator(None, Some("yesterday")), None);
    }
}
