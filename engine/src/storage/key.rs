//! Object keys: checked before any I/O, so that a key can never reach outside its bucket.

use object_store::path::Path;

use crate::limits;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("is empty")]
    Empty,
    /// The key is longer than [`limits::OBJECT_KEY_BYTES_MAX`].
    #[error("is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key starts with `/`.
    #[error("is absolute (starts with '/')")]
    Absolute,
    /// A segment between two `/` (or at either end) is empty: `a//b`, `a/`.
    #[error("has an empty segment (\"//\" or a trailing '/')")]
    EmptySegment,
    /// A segment is `.` or `..`.
    #[error("has a {0:?} segment")]
    DotSegment(&'static str),
    /// A control character (NUL, newline, DEL, ...) at byte `at`.
    #[error("has a control character {ch:?} at byte {at}")]
    ControlCharacter {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A `#`: the local backend names its staged uploads `key#N`.
    #[error("has a '#' at byte {at} (reserved for staged uploads)")]
    Hash {
        /// Its byte offset.
        at: usize,
    },
    /// The store's own path rules refused it (its message).
    #[error("is not a valid object path: {reason}")]
    Invalid {
        /// The store's message.
        reason: String,
    },
    /// A backslash, which some backends take for a separator.
    #[error("has a backslash at byte {at}")]
    Backslash {
        /// Its byte offset.
        at: usize,
    },
}

/// Check `key` and turn it into a store path. Keys are `/`-separated segments of any
/// other characters but control characters and `\`; no segment is empty, `.` or `..`.
///
/// # Errors
/// [`KeyError`] naming the first problem.
pub fn object_path(key: &str) -> Result<Path, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > limits::OBJECT_KEY_BYTES_MAX {
        return Err(KeyError::TooLong { len: key.len(), max: limits::OBJECT_KEY_BYTES_MAX });
    }
    if let Some((at, ch)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlCharacter { ch, at });
    }
    if let Some(at) = key.find('\\') {
        return Err(KeyError::Backslash { at });
    }
    if let Some(at) = key.find('#') {
        return Err(KeyError::Hash { at });
    }
    if key.starts_with('/') {
        return Err(KeyError::Absolute);
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(KeyError::EmptySegment),
            "." => return Err(KeyError::DotSegment(".")),
            ".." => return Err(KeyError::DotSegment("..")),
            _ => {}
        }
    }
    // Kept as written (no percent-encoding), so a key reads back as it was given.
    Path::parse(key).map_err(|e| KeyError::Invalid { reason: e.to_string() })
}

/// The key of a store path, as callers named it (the inverse of [`object_path`]).
pub fn key_of(path: &Path) -> String {
    path.as_ref().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_try_to_escape_or_are_malformed_are_refused_by_name() {
        assert_eq!(object_path(""), Err(KeyError::Empty));
        assert_eq!(object_path("/etc/passwd"), Err(KeyError::Absolute));
        assert_eq!(object_path("../x"), Err(KeyError::DotSegment("..")));
        assert_eq!(object_path("a/../../x"), Err(KeyError::DotSegment("..")));
        assert_eq!(object_path("a/./b"), Err(KeyError::DotSegment(".")));
        assert_eq!(object_path("a//b"), Err(KeyError::EmptySegment));
        assert_eq!(object_path("a/"), Err(KeyError::EmptySegment));
        assert_eq!(object_path("a\0b"), Err(KeyError::ControlCharacter { ch: '\0', at: 1 }));
        assert_eq!(object_path("a\nb"), Err(KeyError::ControlCharacter { ch: '\n', at: 1 }));
        assert_eq!(object_path("a\\..\\b"), Err(KeyError::Backslash { at: 1 }));
        assert_eq!(object_path("a/b#1"), Err(KeyError::Hash { at: 3 }));
        let long = "k".repeat(limits::OBJECT_KEY_BYTES_MAX + 1);
        assert!(matches!(object_path(&long), Err(KeyError::TooLong { .. })));
    }

    #[test]
    fn a_valid_key_round_trips_through_its_path() {
        for key in ["a", "snapshots/000001.snap", "dir/with space/ünïcode", "..a/b..", ".hidden/x"] {
            let path = object_path(key).unwrap();
            assert_eq!(key_of(&path), key, "{path}");
        }
    }
}
