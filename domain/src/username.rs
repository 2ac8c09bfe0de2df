//! Usernames: lower-case ASCII letters, digits, `-` and `_`, 3 to 32 characters.
//!
//! The alphabet is deliberately tiny so that confusable names (Cyrillic `а`, full-width letters,
//! zero-width joiners, upper case) cannot be registered at all.

use std::fmt;

/// The shortest username accepted.
pub const MIN_LEN: usize = 3;
/// The longest username accepted.
pub const MAX_LEN: usize = 32;

/// A validated username. One that breaks the rules cannot be constructed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Why a string is not a username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// Fewer than [`MIN_LEN`] or more than [`MAX_LEN`] characters.
    #[error("a username has 3 to 32 characters")]
    Length,
    /// A character outside `a-z`, `0-9`, `-`, `_`.
    #[error("a username may contain only lower-case letters a-z, digits, '-' and '_'")]
    Character,
}

impl Username {
    /// Parses `raw` into a username, or says which rule it breaks.
    ///
    /// # Errors
    /// [`UsernameError::Length`] or [`UsernameError::Character`].
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        // Check the characters first: a 300-byte string of emoji is a character problem, and
        // `len()` counts bytes, which only equals characters once the alphabet is ASCII.
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(UsernameError::Character);
        }
        if !(MIN_LEN..=MAX_LEN).contains(&raw.len()) {
            return Err(UsernameError::Length);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<(), UsernameError>) {
        assert_eq!(Username::parse(raw).map(|_| ()), expected, "input {raw:?}");
    }

    #[test]
    fn accepts_the_documented_alphabet() {
        check("bob", Ok(()));
        check("alice_2-x", Ok(()));
        check(&"a".repeat(32), Ok(()));
    }

    #[test]
    fn refuses_lengths_outside_3_to_32() {
        check("", Err(UsernameError::Length));
        check("ab", Err(UsernameError::Length));
        check(&"a".repeat(33), Err(UsernameError::Length));
        check(&"a".repeat(300), Err(UsernameError::Length));
    }

    #[test]
    fn refuses_confusables_and_separators() {
        for raw in [
            "Bob",           // upper case
            "\u{430}lice",   // Cyrillic a
            "\u{ff41}lice",  // full-width a
            "al\u{200d}ice", // zero-width joiner
            "\u{202e}ecila", // right-to-left override
            "../etc",        // path
            "bo\0b",         // NUL
            "bob smith",     // space
            "bob.smith",     // dot
        ] {
            check(raw, Err(UsernameError::Character));
        }
    }
}
