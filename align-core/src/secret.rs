//! A wrapper for secret text that never prints itself and is zeroed when dropped.

use std::fmt;
use zeroize::Zeroize;

/// Secret text, such as a freshly minted API key.
///
/// `Debug` and `Display` print `[redacted]`; the only way to the text is [`Secret::expose`],
/// so every place that reveals a secret is easy to find. The memory is overwritten on drop.
///
/// ```
/// use align_core::Secret;
/// let s = Secret::new("ako_9311c954_hunter2".to_owned());
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.expose(), "ako_9311c954_hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`, taking ownership so no other copy is left behind by this call.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret text. Call this only where the secret must leave the process (a response
    /// body shown once, a file with mode 0600).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
