//! Serde helpers: millisecond RFC 3339 times, fixed-size byte strings as hex, and metadata
//! kept as its exact JSON text.

/// `DateTime<Utc>` as RFC 3339 with milliseconds and `Z` (`2026-05-14T10:00:00.000Z`).
pub(crate) mod time_ms {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

/// A `String` holding JSON text, written inline as JSON (not as a string) and read back byte
/// for byte, so the hash over the text survives a round trip through a file.
pub(crate) mod raw_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub(crate) fn serialize<T, S>(text: &T, s: S) -> Result<S::Ok, S::Error>
    where
        T: AsRef<str> + ?Sized,
        S: Serializer,
    {
        let raw: &RawValue =
            serde_json::from_str(text.as_ref()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let raw = <Box<RawValue>>::deserialize(d)?;
        Ok(raw.get().to_owned())
    }
}

/// `[u8; N]` as lowercase hex (`2N` characters).
pub(crate) mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::digest::{hex_decode, hex_encode};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        if hex_decode(&text, &mut out) {
            Ok(out)
        } else {
            Err(serde::de::Error::custom(format!(
                "expected {} hex characters",
                N * 2
            )))
        }
    }
}
