//! Permission queries against a reference evaluator: random expression trees and granted
//! sets, printed (fully parenthesised or relying on AND binding tighter than OR), parsed,
//! and evaluated both ways; the canonical form round-trips; no input panics the parser.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use align_keys::{Error, PermissionQuery};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Expr {
    Atom(String),
    And(Box<Self>, Box<Self>),
    Or(Box<Self>, Box<Self>),
}

const RESOURCES: [&str; 3] = ["a", "b", "inv.x"];
const ACTIONS: [&str; 3] = ["read", "write-all", "*"];
const WORDS: [&str; 2] = ["admin", "root_1"];

/// Every name a key could hold in these tests.
fn universe() -> Vec<String> {
    let mut all: Vec<String> = RESOURCES
        .iter()
        .flat_map(|r| ACTIONS.iter().map(move |a| format!("{r}:{a}")))
        .collect();
    all.extend(WORDS.iter().map(|w| (*w).to_owned()));
    all
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(&RESOURCES[..]), prop::sample::select(&ACTIONS[..]))
            .prop_map(|(r, a)| format!("{r}:{a}")),
        1 => prop::sample::select(&WORDS[..]).prop_map(str::to_owned),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    atom()
        .prop_map(Expr::Atom)
        .prop_recursive(5, 32, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            ]
        })
}

fn granted() -> impl Strategy<Value = Vec<String>> {
    let all = universe();
    let n = all.len();
    prop::sample::subsequence(all, 0..=n)
}

/// The semantics, written out naively from the module documentation.
fn satisfied(atom: &str, granted: &[String]) -> bool {
    granted.iter().any(|g| match atom.split_once(':') {
        None => g == atom,
        Some((r, "*")) => g.split_once(':').is_some_and(|(gr, _)| gr == r),
        Some((r, _)) => g == atom || *g == format!("{r}:*"),
    })
}

fn reference(e: &Expr, granted: &[String]) -> bool {
    match e {
        Expr::Atom(a) => satisfied(a, granted),
        Expr::And(l, r) => reference(l, granted) && reference(r, granted),
        Expr::Or(l, r) => reference(l, granted) || reference(r, granted),
    }
}

/// Keyword spellings and spacing a user might type.
const AND: [&str; 3] = [" AND ", " and ", "\tAnD\n"];
const OR: [&str; 3] = [" OR ", " or ", "  oR  "];

fn full(e: &Expr, style: usize) -> String {
    match e {
        Expr::Atom(a) => a.clone(),
        Expr::And(l, r) => format!("({}{}{})", full(l, style), AND[style % 3], full(r, style)),
        Expr::Or(l, r) => format!("( {}{}{} )", full(l, style), OR[style % 3], full(r, style)),
    }
}

/// Only the parentheses precedence needs: an OR under an AND.
fn minimal(e: &Expr, under_and: bool, style: usize) -> String {
    match e {
        Expr::Atom(a) => a.clone(),
        Expr::And(l, r) => format!(
            "{}{}{}",
            minimal(l, true, style),
            AND[style % 3],
            minimal(r, true, style)
        ),
        Expr::Or(l, r) => {
            let s = format!(
                "{}{}{}",
                minimal(l, false, style),
                OR[style % 3],
                minimal(r, false, style)
            );
            if under_and { format!("({s})") } else { s }
        }
    }
}

fn is_query_error(e: &Error) -> bool {
    matches!(
        e,
        Error::PermissionQueryEmpty
            | Error::PermissionQueryTooLong { .. }
            | Error::PermissionQueryTooDeep { .. }
            | Error::PermissionQueryTooManyAtoms { .. }
            | Error::PermissionQueryUnbalanced { .. }
            | Error::PermissionQuerySyntax { .. }
            | Error::PermissionQueryBadAtom { .. }
    )
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn parsed_queries_answer_as_the_reference_evaluator(
        e in expr(),
        granted in granted(),
        style in 0usize..3,
    ) {
        let want = reference(&e, &granted);
        for text in [full(&e, style), minimal(&e, false, style)] {
            let q = PermissionQuery::parse(&text).unwrap();
            prop_assert_eq!(q.allows(&granted), want, "{} with {:?}", text, granted);
        }
    }

    #[test]
    fn the_canonical_form_parses_back_to_an_equal_query(e in expr(), style in 0usize..3) {
        let q = PermissionQuery::parse(&full(&e, style)).unwrap();
        let fewer_parens = PermissionQuery::parse(&minimal(&e, false, style)).unwrap();
        prop_assert_eq!(&q, &fewer_parens);
        let canonical = q.to_string();
        let again = PermissionQuery::parse(&canonical).unwrap();
        prop_assert_eq!(&again, &q);
        prop_assert_eq!(again.to_string(), canonical);
    }

    #[test]
    fn the_parser_never_panics_and_accepted_text_round_trips(
        s in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec![
                    "(", ")", " AND ", " or ", "and", "a:b", "x", "*", " ", "a:*", ":", "é",
                ]),
                0..400,
            )
            .prop_map(|parts| parts.concat()),
            (0usize..3000).prop_map(|n| format!("{}a{}", "(".repeat(n), ")".repeat(n))),
            (0usize..3000).prop_map(|n| "(".repeat(n)),
        ]
    ) {
        match PermissionQuery::parse(&s) {
            Ok(q) => {
                let canonical = q.to_string();
                prop_assert_eq!(PermissionQuery::parse(&canonical).unwrap(), q);
            }
            Err(e) => prop_assert!(is_query_error(&e), "unexpected error {e:?}"),
        }
    }
}
