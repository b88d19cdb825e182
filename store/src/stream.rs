//! Stream names and expected revisions.

use crate::error::{Error, Result};
use std::fmt;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 256;

/// A validated stream name: 1–256 bytes of `[A-Za-z0-9._:-]`, conventionally `category-id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

impl StreamName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_STREAM_NAME_LEN {
            Some("it is longer than 256 bytes")
        } else if !name.bytes().all(is_stream_byte) {
            Some("only A-Z a-z 0-9 . _ : - are allowed")
        } else if name.starts_with('$') || name == "." || name == ".." {
            Some("it is reserved")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidStreamName {
                name: name.chars().take(64).collect(),
                reason,
            }),
            None => Ok(Self(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: the part before the first `-` (the whole name if there is none).
    pub fn category(&self) -> &str {
        category_of(&self.0)
    }
}

/// The category of a stream name: the part before the first `-`.
pub fn category_of(stream: &str) -> &str {
    stream
        .split_once('-')
        .map_or(stream, |(category, _)| category)
}

fn is_stream_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the client believes about a stream's state before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedRevision {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last revision must be exactly this.
    Exact(u64),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `actual` satisfies this expectation.
    pub fn accepts(self, actual: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual.is_none(),
            Self::StreamExists => actual.is_some(),
            Self::Exact(revision) => actual == Some(revision),
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no_stream"),
            Self::StreamExists => f.write_str("stream_exists"),
            Self::Exact(revision) => write!(f, "revision {revision}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Any text is accepted exactly when it follows the rules, and never panics; a
        /// refusal quotes at most 64 characters of it.
        #[test]
        fn any_text_is_judged_by_the_rules(name in "\\PC{0,300}|[A-Za-z0-9._:$-]{0,260}") {
            let follows = !name.is_empty()
                && name.len() <= MAX_STREAM_NAME_LEN
                && name.bytes().all(is_stream_byte)
                && !name.starts_with('$')
                && name != "."
                && name != "..";
            match StreamName::new(name.clone()) {
                Ok(stream) => {
                    proptest::prop_assert!(follows);
                    proptest::prop_assert_eq!(stream.as_str(), name.as_str());
                }
                Err(Error::InvalidStreamName { name: quoted, .. }) => {
                    proptest::prop_assert!(!follows);
                    proptest::prop_assert!(quoted.chars().count() <= 64);
                }
                Err(other) => proptest::prop_assert!(false, "{other}"),
            }
        }
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(StreamName::new("dossier-26.001-2019-000123").is_ok());
        assert!(StreamName::new("ranking-2019-01").is_ok());
        for bad in ["", "a/b", "..", "a b", "$all", "é", &"x".repeat(257)] {
            assert!(StreamName::new(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(StreamName::new("x".repeat(256)).is_ok());
    }

    #[test]
    fn category_is_the_prefix() {
        assert_eq!(
            StreamName::new("dossier-1-2").unwrap().category(),
            "dossier"
        );
        assert_eq!(category_of("plain"), "plain");
    }

    #[test]
    fn expectations() {
        assert!(ExpectedRevision::NoStream.accepts(None));
        assert!(!ExpectedRevision::NoStream.accepts(Some(0)));
        assert!(ExpectedRevision::StreamExists.accepts(Some(3)));
        assert!(ExpectedRevision::Exact(3).accepts(Some(3)));
        assert!(!ExpectedRevision::Exact(3).accepts(None));
    }
}
