//! Permission queries (DESIGN §12): what `POST /keys/verify` asks of a key, such as
//! `invoices:read AND (invoices:write OR admin)`.
//!
//! # Grammar
//!
//! ```text
//! query   = any
//! any     = all *( "OR" all )            ; OR binds looser than AND
//! all     = primary *( "AND" primary )
//! primary = permission / "(" any ")"
//! ```
//!
//! - A **permission** is `resource:action`, `resource:*` or a single word such as `admin`;
//!   each part holds lowercase ASCII letters, digits, `_`, `-` and `.` (at most 128 bytes).
//! - `AND` and `OR` are keywords in any case (`and`, `Or`), so no permission is named so.
//! - Spaces (ASCII whitespace) separate words; parentheses need none around them.
//! - Bounds: at most [`MAX_QUERY_LEN`] bytes, [`MAX_DEPTH`] nested parentheses and
//!   [`MAX_ATOMS`] permissions. The parser never recurses deeper than the nesting bound, so
//!   no input can exhaust the stack.
//!
//! Every error names the byte offset (from 0) where the query went wrong.
//!
//! # What a key's permissions satisfy
//!
//! A key holds a set of permission names. A query permission is satisfied when the key holds:
//! - `r:a`: `r:a` itself, or the wildcard `r:*`;
//! - `r:*`: any permission of resource `r` (`r:read`, `r:*`, …);
//! - a single word such as `admin`: exactly that word.
//!
//! `AND` needs both sides, `OR` either; there is no negation, so holding more never
//! satisfies less.
//!
//! ```
//! use align_keys::PermissionQuery;
//!
//! let q = PermissionQuery::parse("invoices:read and (invoices:write OR admin)")?;
//! assert_eq!(q.to_string(), "invoices:read AND (invoices:write OR admin)");
//! assert!(q.allows(&["invoices:read", "admin"]));
//! assert!(q.allows(&["invoices:*"]));
//! assert!(!q.allows(&["invoices:read"]));
//! assert!(PermissionQuery::parse("invoices:* AND refunds:read")?.allows(&["invoices:read", "refunds:*"]));
//!
//! let err = PermissionQuery::parse("invoices:read AND").unwrap_err();
//! assert_eq!(err.to_string(), "the permission query expects a permission or `(` at byte 17");
//! # Ok::<(), align_keys::Error>(())
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::vocabulary::MAX_PERMISSION_LEN;

/// The longest query, in bytes (both as sent and as [`Display`](fmt::Display) writes it).
pub const MAX_QUERY_LEN: usize = 1000;
/// The deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 32;
/// The most permissions one query may name.
pub const MAX_ATOMS: usize = 100;

/// One permission named in a query: `resource:action`, `resource:*` or a single word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PermissionAtom {
    name: Box<str>,
    colon: Option<usize>,
}

impl PermissionAtom {
    /// Validates one permission name; the error says which rule it breaks.
    fn parse(word: &str) -> Result<Self, &'static str> {
        if word.len() > MAX_PERMISSION_LEN {
            return Err("a permission name is at most 128 bytes");
        }
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
                })
        };
        let colon = word.find(':');
        let (resource, action) = match colon {
            Some(i) => (&word[..i], Some(&word[i + 1..])),
            None => (word, None),
        };
        if action.is_some_and(|a| a.contains(':')) {
            return Err("a permission has at most one `:` (resource:action)");
        }
        if word.contains('*') && action != Some("*") {
            return Err("a wildcard is written resource:*");
        }
        if resource.is_empty() || action.is_some_and(str::is_empty) {
            return Err("resource:action needs both a resource and an action");
        }
        if !part_ok(resource) || !action.is_none_or(|a| a == "*" || part_ok(a)) {
            return Err(
                "a permission holds only lowercase letters, digits, `_`, `-`, `.` and one `:`",
            );
        }
        Ok(Self {
            name: word.into(),
            colon,
        })
    }

    /// The permission as written, e.g. `invoices:read`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The resource (`invoices` of `invoices:read`), or the whole word if it has no `:`.
    pub fn resource(&self) -> &str {
        &self.name[..self.colon.unwrap_or(self.name.len())]
    }

    /// The action (`read` of `invoices:read`, `*` of a wildcard), if it has one.
    pub fn action(&self) -> Option<&str> {
        self.colon.map(|i| &self.name[i + 1..])
    }

    /// Whether this is `resource:*`.
    pub fn is_wildcard(&self) -> bool {
        self.action() == Some("*")
    }

    /// Whether a key holding the permission `granted` satisfies this atom (see the module's
    /// rules): `r:a` is satisfied by `r:a` and `r:*`, `r:*` by any `r:…`, a word by itself.
    pub fn is_granted_by(&self, granted: &str) -> bool {
        match self.colon {
            None => granted == &*self.name,
            Some(i) => {
                let with_colon = &self.name[..=i];
                if self.is_wildcard() {
                    granted.starts_with(with_colon)
                } else {
                    granted == &*self.name
                        || (granted.len() == i + 2
                            && granted.starts_with(with_colon)
                            && granted.ends_with('*'))
                }
            }
        }
    }
}

impl fmt::Display for PermissionAtom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Atom(PermissionAtom),
    /// Every child (`AND`); at least two, none itself an `All`.
    All(Vec<Self>),
    /// Any child (`OR`); at least two, none itself an `Any`.
    Any(Vec<Self>),
}

impl Node {
    fn eval(&self, holds: &mut dyn FnMut(&PermissionAtom) -> bool) -> bool {
        match self {
            Self::Atom(a) => holds(a),
            Self::All(children) => children.iter().all(|c| c.eval(holds)),
            Self::Any(children) => children.iter().any(|c| c.eval(holds)),
        }
    }

    fn atoms<'a>(&'a self, out: &mut Vec<&'a PermissionAtom>) {
        match self {
            Self::Atom(a) => out.push(a),
            Self::All(children) | Self::Any(children) => {
                children.iter().for_each(|c| c.atoms(out));
            }
        }
    }

    /// Joins `items` under `AND` (`all`) or `OR`, flattening children of the same operator,
    /// so that a query and its canonical form parse to the same tree.
    fn join(all: bool, items: Vec<Self>) -> Self {
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Self::All(children) if all => flat.extend(children),
                Self::Any(children) if !all => flat.extend(children),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            if let Some(only) = flat.pop() {
                return only;
            }
        }
        if all {
            Self::All(flat)
        } else {
            Self::Any(flat)
        }
    }

    fn write(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            Self::Atom(a) => f.write_str(a.as_str()),
            Self::All(children) => {
                for (i, c) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" AND ")?;
                    }
                    if matches!(c, Self::Any(_)) {
                        f.write_char('(')?;
                        c.write(f)?;
                        f.write_char(')')?;
                    } else {
                        c.write(f)?;
                    }
                }
                Ok(())
            }
            Self::Any(children) => {
                for (i, c) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    c.write(f)?;
                }
                Ok(())
            }
        }
    }
}

/// A parsed permission query (see the [module](self) for its grammar and meaning).
///
/// Equal queries print the same; [`Display`](fmt::Display) writes the canonical form
/// (upper-case keywords, one space around them, only the parentheses that change the meaning),
/// which parses back to an equal query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionQuery {
    root: Node,
}

impl PermissionQuery {
    /// Parses `query`, refusing it with an error that names the byte where it went wrong.
    pub fn parse(query: &str) -> Result<Self> {
        if query.len() > MAX_QUERY_LEN {
            return Err(Error::PermissionQueryTooLong {
                limit: MAX_QUERY_LEN,
            });
        }
        if query.trim_ascii().is_empty() {
            return Err(Error::PermissionQueryEmpty);
        }
        let mut p = Parser {
            src: query,
            pos: 0,
            atoms: 0,
        };
        let root = p.any(0)?;
        match p.next() {
            (_, Tok::End) => {}
            (at, Tok::Close) => return Err(Error::PermissionQueryUnbalanced { at }),
            (at, _) => {
                return Err(Error::PermissionQuerySyntax {
                    at,
                    expected: "AND or OR",
                });
            }
        }
        let parsed = Self { root };
        // The canonical form may add a space the query left out (`(a OR b)AND c`); keep it
        // within the bound too, so that every parsed query's canonical form parses back.
        let mut len = Counter(0);
        parsed
            .root
            .write(&mut len)
            .map_err(|_| Error::PermissionQueryTooLong {
                limit: MAX_QUERY_LEN,
            })?;
        if len.0 > MAX_QUERY_LEN {
            return Err(Error::PermissionQueryTooLong {
                limit: MAX_QUERY_LEN,
            });
        }
        Ok(parsed)
    }

    /// Whether a key holding the permissions `granted` satisfies the query.
    ///
    /// ```
    /// use align_keys::PermissionQuery;
    /// let q = PermissionQuery::parse("admin OR reports:*").unwrap();
    /// assert!(q.allows(&["reports:export"]));
    /// assert!(!q.allows(&["invoices:*"]));
    /// ```
    pub fn allows<S: AsRef<str>>(&self, granted: &[S]) -> bool {
        self.allows_by(|atom| granted.iter().any(|g| atom.is_granted_by(g.as_ref())))
    }

    /// Whether the query holds when each permission it names is satisfied exactly when
    /// `holds` says so (for a key whose permissions are not a list of names, such as a
    /// [`PermissionSet`](crate::PermissionSet)). `holds` is called at most once per atom,
    /// left to right, skipping what cannot change the answer.
    pub fn allows_by(&self, mut holds: impl FnMut(&PermissionAtom) -> bool) -> bool {
        self.root.eval(&mut holds)
    }

    /// The permissions the query names, left to right (with repeats), e.g. to check them
    /// against a key space's vocabulary.
    pub fn atoms(&self) -> Vec<&PermissionAtom> {
        let mut out = Vec::new();
        self.root.atoms(&mut out);
        out
    }
}

impl fmt::Display for PermissionQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.write(f)
    }
}

impl std::str::FromStr for PermissionQuery {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for PermissionQuery {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PermissionQuery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Counts the bytes a canonical form would take, without writing them.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Open,
    Close,
    And,
    Or,
    Word(&'a str),
    End,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    atoms: usize,
}

const OPERAND: &str = "a permission or `(`";

impl<'a> Parser<'a> {
    /// The next token and the byte where it starts.
    fn next(&mut self) -> (usize, Tok<'a>) {
        let bytes = self.src.as_bytes();
        while bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let tok = match bytes.get(start) {
            None => Tok::End,
            Some(b'(') => {
                self.pos += 1;
                Tok::Open
            }
            Some(b')') => {
                self.pos += 1;
                Tok::Close
            }
            Some(_) => {
                let len = bytes[start..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || matches!(b, b'(' | b')'))
                    .unwrap_or(bytes.len() - start);
                self.pos += len;
                // Words end at ASCII bytes or the end, so the slice is on char boundaries.
                let word = &self.src[start..start + len];
                if word.eq_ignore_ascii_case("and") {
                    Tok::And
                } else if word.eq_ignore_ascii_case("or") {
                    Tok::Or
                } else {
                    Tok::Word(word)
                }
            }
        };
        (start, tok)
    }

    fn peek(&mut self) -> Tok<'a> {
        let at = self.pos;
        let (_, tok) = self.next();
        self.pos = at;
        tok
    }

    fn any(&mut self, depth: usize) -> Result<Node> {
        let mut items = vec![self.all(depth)?];
        while self.peek() == Tok::Or {
            self.next();
            items.push(self.all(depth)?);
        }
        Ok(Node::join(false, items))
    }

    fn all(&mut self, depth: usize) -> Result<Node> {
        let mut items = vec![self.primary(depth)?];
        while self.peek() == Tok::And {
            self.next();
            items.push(self.primary(depth)?);
        }
        Ok(Node::join(true, items))
    }

    fn primary(&mut self, depth: usize) -> Result<Node> {
        match self.next() {
            (at, Tok::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::PermissionQueryTooDeep {
                        at,
                        limit: MAX_DEPTH,
                    });
                }
                let inner = self.any(depth + 1)?;
                match self.next() {
                    (_, Tok::Close) => Ok(inner),
                    (_, Tok::End) => Err(Error::PermissionQueryUnbalanced { at }),
                    (at, _) => Err(Error::PermissionQuerySyntax {
                        at,
                        expected: "AND, OR or `)`",
                    }),
                }
            }
            (at, Tok::Word(word)) => {
                self.atoms += 1;
                if self.atoms > MAX_ATOMS {
                    return Err(Error::PermissionQueryTooManyAtoms {
                        at,
                        limit: MAX_ATOMS,
                    });
                }
                PermissionAtom::parse(word)
                    .map(Node::Atom)
                    .map_err(|reason| Error::PermissionQueryBadAtom { at, reason })
            }
            (at, Tok::And | Tok::Or | Tok::Close | Tok::End) => Err(Error::PermissionQuerySyntax {
                at,
                expected: OPERAND,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure should panic")]
mod tests {
    use super::*;

    fn err(q: &str) -> Error {
        PermissionQuery::parse(q).unwrap_err()
    }

    #[test]
    fn an_empty_query_is_refused() {
        assert!(matches!(err(""), Error::PermissionQueryEmpty));
        assert!(matches!(err(" \t\n"), Error::PermissionQueryEmpty));
    }

    #[test]
    fn unbalanced_parentheses_are_refused_at_the_lonely_one() {
        assert!(matches!(
            err("a AND (b OR c"),
            Error::PermissionQueryUnbalanced { at: 6 }
        ));
        assert!(matches!(
            err("a AND b) OR c"),
            Error::PermissionQueryUnbalanced { at: 7 }
        ));
        assert!(matches!(
            err("((a)"),
            Error::PermissionQueryUnbalanced { at: 0 }
        ));
    }

    #[test]
    fn a_dangling_operator_is_refused_where_its_operand_is_missing() {
        let e = err("invoices:read AND");
        assert!(matches!(
            e,
            Error::PermissionQuerySyntax {
                at: 17,
                expected: OPERAND
            }
        ));
        assert!(matches!(
            err("OR a"),
            Error::PermissionQuerySyntax { at: 0, .. }
        ));
        assert!(matches!(
            err("a AND OR b"),
            Error::PermissionQuerySyntax { at: 6, .. }
        ));
        assert!(matches!(
            err("(a OR )"),
            Error::PermissionQuerySyntax { at: 6, .. }
        ));
        assert!(matches!(
            err("()"),
            Error::PermissionQuerySyntax { at: 1, .. }
        ));
        let e = err("a b");
        assert!(matches!(
            e,
            Error::PermissionQuerySyntax {
                at: 2,
                expected: "AND or OR"
            }
        ));
        assert_eq!(
            e.to_string(),
            "the permission query expects AND or OR at byte 2"
        );
        assert!(matches!(
            err("(a b)"),
            Error::PermissionQuerySyntax { at: 3, .. }
        ));
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_refused_without_recursing_further() {
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(PermissionQuery::parse(&ok).unwrap().to_string(), "a");
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(
            err(&deep),
            Error::PermissionQueryTooDeep { at: 32, limit: 32 }
        ));
        let deeper = format!("{}a{}", "(".repeat(450), ")".repeat(450));
        assert!(matches!(err(&deeper), Error::PermissionQueryTooDeep { .. }));
        assert!(matches!(
            err(&"(".repeat(MAX_QUERY_LEN)),
            Error::PermissionQueryTooDeep { .. }
        ));
    }

    #[test]
    fn a_query_over_the_length_bound_is_refused() {
        let long = format!("a:{}", "b".repeat(MAX_QUERY_LEN));
        assert!(matches!(
            err(&long),
            Error::PermissionQueryTooLong { limit: 1000 }
        ));
        // Within the bound as sent, over it once written canonically (spaces added): refused,
        // so that every query accepted has a canonical form that parses back.
        let squeezed = vec!["(abcdefgh OR abcdefgh)and(abcdefgh OR abcdefgh)"; 20].join("or");
        assert!(squeezed.len() <= MAX_QUERY_LEN);
        assert!(matches!(
            err(&squeezed),
            Error::PermissionQueryTooLong { limit: 1000 }
        ));
        let fits = vec!["(a OR b)and(c OR d)"; 25].join("or");
        let q = PermissionQuery::parse(&fits).unwrap();
        assert!(q.to_string().len() <= MAX_QUERY_LEN);
    }

    #[test]
    fn more_atoms_than_the_bound_are_refused_at_the_first_extra_one() {
        let ok = vec!["a"; MAX_ATOMS].join(" OR ");
        assert!(PermissionQuery::parse(&ok).is_ok());
        let over = vec!["a"; MAX_ATOMS + 1].join(" OR ");
        assert!(matches!(
            err(&over),
            Error::PermissionQueryTooManyAtoms {
                at: 500,
                limit: 100
            }
        ));
    }

    #[test]
    fn bad_permission_names_are_refused_with_the_rule() {
        let reason = |q: &str| match err(q) {
            Error::PermissionQueryBadAtom { at, reason } => (at, reason),
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(reason("a AND Invoices:read").0, 6);
        assert!(reason("Invoices:read").1.contains("lowercase"));
        assert!(reason("a:b:c").1.contains("one `:`"));
        assert!(reason("*").1.contains("resource:*"));
        assert!(reason("a:r*").1.contains("resource:*"));
        assert!(reason("a:").1.contains("both"));
        assert!(reason(":a").1.contains("both"));
        assert!(reason("a&&b").1.contains("lowercase"));
        assert!(reason("café").1.contains("lowercase"));
        assert!(reason(&"a".repeat(129)).1.contains("128"));
    }

    #[test]
    fn and_binds_tighter_than_or_and_keywords_ignore_case() {
        let q = PermissionQuery::parse("a or b AnD c").unwrap();
        assert_eq!(q.to_string(), "a OR b AND c");
        assert!(q.allows(&["a"]));
        assert!(!q.allows(&["b"]));
        assert!(q.allows(&["b", "c"]));
        let q = PermissionQuery::parse("(a OR b)AND(c)").unwrap();
        assert_eq!(q.to_string(), "(a OR b) AND c");
    }

    #[test]
    fn wildcards_work_on_both_sides() {
        let q = PermissionQuery::parse("invoices:read").unwrap();
        assert!(q.allows(&["invoices:*"]));
        assert!(!q.allows(&["invoices:write"]));
        assert!(!q.allows(&["invoicesx:*", "invoices"]));
        let q = PermissionQuery::parse("invoices:*").unwrap();
        assert!(q.allows(&["invoices:void"]));
        assert!(q.allows(&["invoices:*"]));
        assert!(!q.allows(&["invoices", "refunds:*", "invoicesx:read"]));
        let q = PermissionQuery::parse("admin").unwrap();
        assert!(q.allows(&["admin"]));
        assert!(!q.allows(&["admin:*", "admins"]));
        assert!(!q.allows::<&str>(&[]));
    }

    #[test]
    fn queries_travel_as_json_strings() {
        let q: PermissionQuery = serde_json::from_str("\"a:b and (c or d)\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"a:b AND (c OR d)\"");
        assert!(serde_json::from_str::<PermissionQuery>("\"a AND\"").is_err());
        let atoms: Vec<_> = q.atoms().iter().map(|a| a.as_str()).collect();
        assert_eq!(atoms, ["a:b", "c", "d"]);
    }
}
