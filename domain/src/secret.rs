//! Secret bytes that never print.

use std::fmt;

/// 32 secret bytes (a private key). `Debug` prints `Secret32(..)`, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Wraps the bytes.
    #[must_use]
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, for the adapter that needs them.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret32::new([0xab; 32]);
        let shown = format!("{s:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
