//! The one rule for a display name (a key's, a project's, a user's, an organisation's): what
//! every door (the API, the console, the CLI, an embedder's [`KeyManager`]) accepts, and what
//! `docs/openapi.yaml`'s `DisplayName` schema says, so a client that validates against the
//! specification and the server never disagree.
//!
//! A name as sent is 1 to [`MAX_NAME_LEN`] characters, holds at least one character that is
//! not whitespace, and no control character (C0, DEL, C1) and no bidirectional formatting
//! character (U+202E RIGHT-TO-LEFT OVERRIDE and its kin, which make a name print reversed in a
//! terminal or a page). [`checked_name`] returns it trimmed, which is how the server stores
//! projects', users' and organisations' names.
//!
//! ```
//! use align_core::name::{NameDefect, checked_name};
//! assert_eq!(checked_name("  Billing  "), Ok("Billing"));
//! assert_eq!(checked_name("   "), Err(NameDefect::Blank));
//! assert_eq!(checked_name("evil\u{202E}gnp.exe"), Err(NameDefect::Formatting));
//! ```
//!
//! [`KeyManager`]: https://docs.rs/align-keys

/// The most characters (Unicode scalar values) a name may have, counted as sent.
pub const MAX_NAME_LEN: usize = 200;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameDefect {
    /// Empty or only whitespace.
    Blank,
    /// More than [`MAX_NAME_LEN`] characters.
    TooLong,
    /// A control or bidirectional formatting character.
    Formatting,
}

impl NameDefect {
    /// The reason, worded to follow "name " in an error message.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Blank => "must not be empty",
            Self::TooLong => "must be at most 200 characters",
            Self::Formatting => "must not contain control or bidirectional formatting characters",
        }
    }
}

impl std::fmt::Display for NameDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "name {}", self.reason())
    }
}

/// The name to store (trimmed), or why `name` is refused.
pub fn checked_name(name: &str) -> Result<&str, NameDefect> {
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(NameDefect::Formatting);
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(NameDefect::TooLong);
    }
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(NameDefect::Blank);
    }
    Ok(trimmed)
}

/// The Unicode bidirectional formatting characters: U+061C, U+200E, U+200F, U+202A–U+202E and
/// U+2066–U+2069.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_defect_is_named() {
        assert_eq!(checked_name(""), Err(NameDefect::Blank));
        assert_eq!(checked_name("\u{3000}\t "), Err(NameDefect::Formatting));
        assert_eq!(checked_name("\u{3000} "), Err(NameDefect::Blank));
        assert_eq!(checked_name(&"a".repeat(201)), Err(NameDefect::TooLong));
        assert_eq!(checked_name(&"é".repeat(200)), Ok("é".repeat(200).as_str()));
        // Counted as sent: padding counts towards the limit.
        assert_eq!(
            checked_name(&format!(" {}", "a".repeat(200))),
            Err(NameDefect::TooLong)
        );
        assert_eq!(checked_name("a\u{85}b"), Err(NameDefect::Formatting));
        assert_eq!(checked_name("a\u{2067}b"), Err(NameDefect::Formatting));
        assert_eq!(
            NameDefect::Formatting.to_string(),
            "name must not contain control or bidirectional formatting characters"
        );
    }
}
