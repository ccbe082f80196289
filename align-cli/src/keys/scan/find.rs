//! The matcher behind `align keys scan`: every key with a valid checksum in a buffer, Align's
//! own (`ako_…`, `akt_…`, DESIGN §3) and any key space's (`acme_…`, DESIGN §12), in one pass.
//!
//! Both kinds share one shape, `{tag}_{id8}_{49 base62}`, and differ only in the tag (Align's
//! `ako`/`akt`, a key space's 2 to 8 lowercase letters), so one hand-written matcher serves
//! both and the tag decides which parser checks the checksum. The shape has no fixed literal
//! to search for, and a regex for it (`[a-z]{2,8}_[0-9a-f]{8}_…`) cannot skip ahead: it made
//! the scan three times slower. Instead the matcher looks for what every token has and little
//! else does, two `_` nine bytes apart (the one after the tag and the one after the id), with
//! memchr's vector search for a pair of bytes, and looks closer only there. On the cargo
//! registry's sources this reads as fast as the regex for `ako_`/`akt_` alone did
//! (measurements in `align-cli/README.md`).

use align_keys::Environment;
use align_keys::keyspace_token::{MAX_TAG_LEN, MIN_TAG_LEN, parse_keyspace_token};
use memchr::arch::all::packedpair::Pair;

/// Bytes from the `_` after the tag to the `_` after the id.
const ID_SPAN: usize = 9;
/// Base62 characters after the id's `_`: 43 secret and 6 checksum.
const TAIL_LEN: usize = 49;
/// Bytes from the `_` after the tag to the end of the token.
const AFTER_TAG: usize = ID_SPAN + 1 + TAIL_LEN;

/// Which kind of key a find is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// One of Align's own API keys, of this environment.
    Align(Environment),
    /// A key of a key space (DESIGN §12); its prefix starts with the key space's tag.
    Keyspace,
}

/// One key with a valid checksum, found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hit {
    /// 1-based line.
    pub(crate) line: usize,
    /// The key's prefix (`ako_9311c954`, `acme_9311c954`): never the secret.
    pub(crate) prefix: String,
    /// Align's key or a key space's.
    pub(crate) kind: Kind,
}

/// Whether `b` may continue a token (so a token may not start right after it).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `b` may be part of a token's id.
fn is_lower_hex(b: &u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

/// Finds keys in buffers: build it once, then call [`KeyFinder::find_in`] from any thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyFinder {
    spans: SpanFinder,
}

impl KeyFinder {
    /// A finder with the fastest search this CPU runs.
    pub(crate) fn new() -> Self {
        Self {
            spans: SpanFinder::new(),
        }
    }

    /// The keys with a valid checksum in `bytes`, in order, with their 1-based lines.
    ///
    /// A key counts only as a whole word: not right after a letter, digit or `_`, and not
    /// right before a letter or digit (`key="ako_…"`, `ako_…_v2` and `.env` lines count;
    /// `xako_…` does not).
    pub(crate) fn find_in(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut found = Vec::new();
        let (mut line, mut counted) = (1, 0);
        self.spans.for_each(bytes, |at| {
            let Some((start, prefix, kind)) = key_at(bytes, at) else {
                return;
            };
            line += memchr::memchr_iter(b'\n', &bytes[counted..start]).count();
            counted = start;
            found.push(Hit {
                line,
                prefix: prefix.to_owned(),
                kind,
            });
        });
        found
    }
}

/// Finds the places where two `_` stand nine bytes apart, as the `_` after a token's tag and
/// the `_` after its id do: memchr's "packed pair" prefilter (the one behind its substring
/// search) with the widest vector instructions the CPU has, else `memchr` on `_`.
///
/// `_` alone is common in code (one byte in 50 of the cargo registry's sources), two of them
/// nine apart much less so (one in 700), and the vector search skips the rest about as fast as
/// the regex crate skips to an `ako_`/`akt_` literal.
#[derive(Clone, Copy, Debug)]
enum SpanFinder {
    #[cfg(target_arch = "x86_64")]
    Avx2(memchr::arch::x86_64::avx2::packedpair::Finder),
    #[cfg(target_arch = "x86_64")]
    Sse2(memchr::arch::x86_64::sse2::packedpair::Finder),
    #[cfg(target_arch = "aarch64")]
    Neon(memchr::arch::aarch64::neon::packedpair::Finder),
    /// Every `_` by `memchr`, then a look nine bytes on: any CPU.
    Scalar,
}

/// What [`SpanFinder`] searches for: only bytes 0 and 9 of it are ever compared.
const SPAN_NEEDLE: &[u8; ID_SPAN + 1] = b"_--------_";

impl SpanFinder {
    /// The fastest finder this CPU runs.
    fn new() -> Self {
        u8::try_from(ID_SPAN)
            .ok()
            .and_then(|span| Pair::with_indices(SPAN_NEEDLE, 0, span))
            .and_then(Self::vector)
            .unwrap_or(Self::Scalar)
    }

    /// The widest vector finder for `pair` this CPU runs, if any.
    #[cfg(target_arch = "x86_64")]
    fn vector(pair: Pair) -> Option<Self> {
        use memchr::arch::x86_64::{avx2, sse2};
        avx2::packedpair::Finder::with_pair(SPAN_NEEDLE, pair)
            .map(Self::Avx2)
            .or_else(|| sse2::packedpair::Finder::with_pair(SPAN_NEEDLE, pair).map(Self::Sse2))
    }

    /// The widest vector finder for `pair` this CPU runs, if any.
    #[cfg(target_arch = "aarch64")]
    fn vector(pair: Pair) -> Option<Self> {
        memchr::arch::aarch64::neon::packedpair::Finder::with_pair(SPAN_NEEDLE, pair)
            .map(Self::Neon)
    }

    /// No vector finder on this architecture.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    fn vector(_: Pair) -> Option<Self> {
        None
    }

    /// The first `i` in `hay` where `hay[i]` and `hay[i + 9]` may both be `_` (the vector
    /// finders report exactly those; the caller checks again all the same).
    fn next_in(self, hay: &[u8]) -> Option<usize> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(f) if hay.len() >= f.min_haystack_len() => f.find_prefilter(hay),
            #[cfg(target_arch = "x86_64")]
            Self::Sse2(f) if hay.len() >= f.min_haystack_len() => f.find_prefilter(hay),
            #[cfg(target_arch = "aarch64")]
            Self::Neon(f) if hay.len() >= f.min_haystack_len() => f.find_prefilter(hay),
            // Also the end of a buffer too short for the vector finder.
            _ => memchr::memchr_iter(b'_', hay).find(|i| hay.get(i + ID_SPAN) == Some(&b'_')),
        }
    }

    /// Calls `each` with every `i`, in order, where `bytes[i]` and `bytes[i + 9]` are `_`.
    fn for_each(self, bytes: &[u8], mut each: impl FnMut(usize)) {
        let mut from = 0;
        while let Some(found) = bytes.get(from..).and_then(|hay| self.next_in(hay)) {
            let at = from + found;
            if bytes[at] == b'_' && bytes.get(at + ID_SPAN) == Some(&b'_') {
                each(at);
            }
            from = at + 1;
        }
    }
}

/// If `bytes[at]` is the `_` after a token's tag and a whole token with a valid checksum
/// stands there: where it starts, its prefix and which kind it is.
fn key_at(bytes: &[u8], at: usize) -> Option<(usize, &str, Kind)> {
    let end = at + AFTER_TAG;
    let tail = bytes.get(at + ID_SPAN + 1..end)?;
    if !bytes[at + 1..at + ID_SPAN].iter().all(is_lower_hex)
        || !tail.iter().all(u8::is_ascii_alphanumeric)
        || bytes.get(end).is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    let tag_len = bytes[..at]
        .iter()
        .rev()
        .take(MAX_TAG_LEN + 1)
        .take_while(|b| b.is_ascii_lowercase())
        .count();
    if !(MIN_TAG_LEN..=MAX_TAG_LEN).contains(&tag_len) {
        return None;
    }
    let start = at - tag_len;
    if start > 0 && is_word(bytes[start - 1]) {
        return None;
    }
    // Every byte checked above is ASCII, so this never fails.
    let token = std::str::from_utf8(&bytes[start..end]).ok()?;
    if Environment::from_tag(&bytes[start..at]).is_some() {
        let key = align_keys::token::parse(token).ok()?;
        Some((start, key.prefix(), Kind::Align(key.environment())))
    } else {
        let key = parse_keyspace_token(token).ok()?;
        Some((start, key.prefix(), Kind::Keyspace))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure should panic")]
mod tests {
    use align_keys::keyspace_token::{KeyspaceTag, generate_keyspace_token};
    use align_keys::token::generate;
    use proptest::prelude::*;

    use super::*;

    fn find_in(bytes: &[u8]) -> Vec<Hit> {
        KeyFinder::new().find_in(bytes)
    }

    // Test-vector tokens (fixtures, not keys), split so that no scanner flags this file.
    const VALID: &str = concat!(
        "ako_9311c954_",
        "00000000000000000000000000000000000000000000",
        "Rws4U"
    );

    fn keyspace_token(tag: &str) -> (String, String) {
        let minted = generate_keyspace_token(&KeyspaceTag::new(tag).unwrap()).unwrap();
        (minted.token.expose().to_owned(), minted.prefix)
    }

    /// `t` with one character of its secret changed: same shape, wrong checksum.
    fn mistyped(t: &str) -> String {
        let i = t.len() - 20;
        let c = if &t[i..=i] == "A" { "B" } else { "A" };
        format!("{}{c}{}", &t[..i], &t[i + 1..])
    }

    fn lines_and_prefixes(text: &str) -> Vec<(usize, String)> {
        find_in(text.as_bytes())
            .into_iter()
            .map(|h| (h.line, h.prefix))
            .collect()
    }

    #[test]
    fn only_whole_tokens_with_a_valid_checksum_count() {
        let mistyped = VALID.replacen("00000", "00001", 1);
        let longer = format!("x{VALID}");
        let text = format!("a\n{VALID}\n{mistyped}\n{longer}\nkey=\"{VALID}\"\n");
        assert_eq!(
            find_in(text.as_bytes()),
            vec![
                Hit {
                    line: 2,
                    prefix: "ako_9311c954".to_owned(),
                    kind: Kind::Align(Environment::Live)
                },
                Hit {
                    line: 5,
                    prefix: "ako_9311c954".to_owned(),
                    kind: Kind::Align(Environment::Live)
                },
            ]
        );
    }

    #[test]
    fn key_space_tokens_are_found_by_their_prefix_and_never_shown_whole() {
        let (shortest, shortest_prefix) = keyspace_token("ab");
        let (longest, longest_prefix) = keyspace_token("abcdefgh");
        let (acme, acme_prefix) = keyspace_token("acme");
        let text = format!("{shortest}\n\nACME_KEY={acme} # {longest}\n");
        let found = find_in(text.as_bytes());
        assert_eq!(
            found,
            vec![
                Hit {
                    line: 1,
                    prefix: shortest_prefix,
                    kind: Kind::Keyspace
                },
                Hit {
                    line: 3,
                    prefix: acme_prefix,
                    kind: Kind::Keyspace
                },
                Hit {
                    line: 3,
                    prefix: longest_prefix,
                    kind: Kind::Keyspace
                },
            ]
        );
        let shown = format!("{found:?}");
        assert!(!shown.contains(&acme[14..]), "{shown}");
    }

    #[test]
    fn a_key_space_token_with_one_character_changed_is_not_found() {
        let (acme, _) = keyspace_token("acme");
        assert_eq!(find_in(mistyped(&acme).as_bytes()), vec![]);
        let id = if &acme[5..6] == "0" { "1" } else { "0" };
        let id_changed = format!("acme_{id}{}", &acme[6..]);
        assert_eq!(find_in(id_changed.as_bytes()), vec![]);
        assert_eq!(find_in(acme.as_bytes()).len(), 1);
    }

    #[test]
    fn key_space_tokens_glued_to_a_word_are_not_found() {
        let (acme, _) = keyspace_token("acme");
        let (ab, _) = keyspace_token("ab");
        let (longest, _) = keyspace_token("abcdefgh");
        for glued in [
            format!("x{acme}"),
            format!("X{acme}"),
            format!("9{acme}"),
            format!("_{acme}"),
            format!("z{longest}"),
            format!("{acme}x"),
            format!("{acme}0"),
            format!("{ab}Z"),
        ] {
            assert_eq!(find_in(glued.as_bytes()), vec![], "{glued}");
        }
        // `_` may follow a token, as it may follow an Align key.
        assert_eq!(find_in(format!("{acme}_v2").as_bytes()).len(), 1);
    }

    #[test]
    fn tags_outside_the_key_space_rules_are_not_found() {
        let (acme, _) = keyspace_token("acme");
        // The checksum covers the tag, so a changed tag fails it whatever the tag.
        for tag in ["a", "ACME", "abcdefghi", "ako", "akt", "acm3"] {
            let text = format!("{tag}{}", &acme[4..]);
            assert_eq!(find_in(text.as_bytes()), vec![], "{text}");
        }
    }

    #[test]
    fn align_tokens_are_still_found_with_their_environment() {
        let live = generate(Environment::Live).unwrap();
        let sandbox = generate(Environment::Sandbox).unwrap();
        let text = format!(
            "{} {}\n{}",
            live.token.expose(),
            sandbox.token.expose(),
            mistyped(live.token.expose())
        );
        assert_eq!(
            find_in(text.as_bytes()),
            vec![
                Hit {
                    line: 1,
                    prefix: live.prefix,
                    kind: Kind::Align(Environment::Live)
                },
                Hit {
                    line: 1,
                    prefix: sandbox.prefix,
                    kind: Kind::Align(Environment::Sandbox)
                },
            ]
        );
    }

    #[test]
    fn a_token_is_found_at_every_offset_of_short_and_long_buffers() {
        // Around the vector widths (16, 32 bytes) and the vector finder's shortest haystack.
        let (acme, prefix) = keyspace_token("acme");
        for pad in 0..100 {
            for trail in [0, 1, 7, 40] {
                let text = format!("{}\n{acme}{}", " ".repeat(pad), ".".repeat(trail));
                assert_eq!(
                    lines_and_prefixes(&text),
                    vec![(2, prefix.clone())],
                    "{pad}"
                );
            }
        }
    }

    /// Every `i` where `bytes[i]` and `bytes[i + 9]` are `_`, the slow obvious way.
    fn spans_by_hand(bytes: &[u8]) -> Vec<usize> {
        (0..bytes.len().saturating_sub(ID_SPAN))
            .filter(|i| bytes[*i] == b'_' && bytes[i + ID_SPAN] == b'_')
            .collect()
    }

    /// Every finder this machine can run: the one `new` picks, SSE2 where that is AVX2, and
    /// the scalar one.
    fn every_span_finder() -> Vec<SpanFinder> {
        let mut all = vec![SpanFinder::new(), SpanFinder::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            let pair = Pair::with_indices(SPAN_NEEDLE, 0, 9).unwrap();
            let sse2 = memchr::arch::x86_64::sse2::packedpair::Finder::with_pair(SPAN_NEEDLE, pair);
            all.push(SpanFinder::Sse2(sse2.unwrap()));
        }
        all
    }

    fn spans(finder: SpanFinder, bytes: &[u8]) -> Vec<usize> {
        let mut all = Vec::new();
        finder.for_each(bytes, |i| all.push(i));
        all
    }

    /// A minted token of either kind: (token, prefix, kind).
    fn any_token() -> impl Strategy<Value = (String, String, Kind)> {
        let tag = "[a-z]{2,8}".prop_filter("not Align's own tags", |t| t != "ako" && t != "akt");
        prop_oneof![
            any::<bool>().prop_map(|sandbox| {
                let env = if sandbox {
                    Environment::Sandbox
                } else {
                    Environment::Live
                };
                let minted = generate(env).unwrap();
                (
                    minted.token.expose().to_owned(),
                    minted.prefix,
                    Kind::Align(env),
                )
            }),
            tag.prop_map(|tag| {
                let (token, prefix) = keyspace_token(&tag);
                (token, prefix, Kind::Keyspace)
            }),
        ]
    }

    proptest! {
        /// The vector finders and the scalar one (any CPU's fallback) report the same places,
        /// every one of them, dense with `_` or not.
        #[test]
        fn every_span_finder_reports_every_place(text in "[_a0 ]{0,400}") {
            let bytes = text.as_bytes();
            let want = spans_by_hand(bytes);
            for finder in every_span_finder() {
                prop_assert_eq!(spans(finder, bytes), want.clone(), "{:?}", finder);
            }
        }

        /// Any minted key in any text, standing apart from the words around it, is found
        /// exactly once, on its line, by its prefix.
        #[test]
        fn a_minted_key_in_random_text_is_found_once_on_its_line(
            (token, prefix, kind) in any_token(),
            before in "[a-zA-Z0-9_ \t\n=:\"'.,;(){}/-]{0,300}",
            open in prop::sample::select(vec![" ", "\n", "=", "\"", "'", ":", "(", "/", "-", "\t"]),
            close in prop::sample::select(vec![" ", "\n", "\"", "'", "_", ".", ",", ";", ")"]),
            after in "[a-zA-Z0-9_ \t\n=:\"'.,;(){}/-]{0,300}",
            at_end in any::<bool>(),
        ) {
            let head = format!("{before}{open}");
            let text = if at_end {
                format!("{head}{token}")
            } else {
                format!("{head}{token}{close}{after}")
            };
            let line = 1 + head.matches('\n').count();
            prop_assert_eq!(find_in(text.as_bytes()), vec![Hit { line, prefix, kind }]);
        }
    }
}
