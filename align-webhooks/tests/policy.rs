#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SSRF and URL policy: every refused range by literal and by resolver answer. Nothing here
//! connects anywhere; the resolver is a fake.

use std::collections::HashMap;
use std::net::IpAddr;

use align_core::Environment;
use align_webhooks::{AddressClass, Error, Resolver, UrlDefect, UrlPolicy, classify};
use async_trait::async_trait;

/// Every special-purpose range we refuse, with one or more addresses in it and the class.
const REFUSED: &[(&str, AddressClass)] = &[
    ("0.0.0.0", AddressClass::Unspecified),
    ("0.1.2.3", AddressClass::Unspecified),
    ("10.0.0.1", AddressClass::Private),
    ("10.255.255.254", AddressClass::Private),
    ("100.64.0.1", AddressClass::SharedCgnat),
    ("100.127.255.254", AddressClass::SharedCgnat),
    ("127.0.0.1", AddressClass::Loopback),
    ("127.255.0.9", AddressClass::Loopback),
    ("169.254.169.254", AddressClass::LinkLocal),
    ("172.16.0.1", AddressClass::Private),
    ("172.31.255.254", AddressClass::Private),
    ("192.0.0.8", AddressClass::Reserved),
    ("192.0.2.10", AddressClass::Documentation),
    ("192.88.99.1", AddressClass::Reserved),
    ("192.168.1.1", AddressClass::Private),
    ("198.18.0.1", AddressClass::Benchmarking),
    ("198.19.255.254", AddressClass::Benchmarking),
    ("198.51.100.7", AddressClass::Documentation),
    ("203.0.113.9", AddressClass::Documentation),
    ("224.0.0.1", AddressClass::Multicast),
    ("239.255.255.250", AddressClass::Multicast),
    ("240.0.0.1", AddressClass::Reserved),
    ("255.255.255.254", AddressClass::Reserved),
    ("255.255.255.255", AddressClass::Broadcast),
    ("::", AddressClass::Unspecified),
    ("::1", AddressClass::Loopback),
    ("::ffff:127.0.0.1", AddressClass::Loopback),
    ("::ffff:10.1.2.3", AddressClass::Private),
    ("::ffff:169.254.169.254", AddressClass::LinkLocal),
    ("::10.1.2.3", AddressClass::Reserved),
    ("64:ff9b::a00:1", AddressClass::Private),
    ("64:ff9b::7f00:1", AddressClass::Loopback),
    ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
    ("64:ff9b:1::1", AddressClass::Reserved),
    ("100::1", AddressClass::Reserved),
    ("2001::1", AddressClass::Reserved),
    ("2001:2::1", AddressClass::Benchmarking),
    ("2001:10::1", AddressClass::Reserved),
    ("2001:db8::1", AddressClass::Documentation),
    ("2001:db8:ffff::1", AddressClass::Documentation),
    ("2002:a00:1::1", AddressClass::Private),
    ("2002:7f00:1::1", AddressClass::Loopback),
    ("3fff::1", AddressClass::Documentation),
    ("5f00::1", AddressClass::Reserved),
    ("fc00::1", AddressClass::Private),
    ("fd12:3456::1", AddressClass::Private),
    ("fe80::1", AddressClass::LinkLocal),
    ("febf::1", AddressClass::LinkLocal),
    ("fec0::1", AddressClass::LinkLocal),
    ("ff02::1", AddressClass::Multicast),
    ("ff0e::1", AddressClass::Multicast),
    ("4000::1", AddressClass::Reserved),
    ("::2", AddressClass::Reserved),
];

const PUBLIC: &[&str] = &[
    "93.184.216.34",
    "1.1.1.1",
    "8.8.8.8",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "192.0.3.1",
    "198.20.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
    "2002:5db8:d822::1",
];

fn literal_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}/hook"),
        IpAddr::V6(v6) => format!("https://[{v6}]/hook"),
    }
}

struct FakeResolver(HashMap<String, Vec<IpAddr>>);

#[async_trait]
impl Resolver for FakeResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

fn resolver_answering(ips: &[IpAddr]) -> FakeResolver {
    FakeResolver(HashMap::from([(
        "hooks.customer.example".to_owned(),
        ips.to_vec(),
    )]))
}

fn always_refused(class: AddressClass) -> bool {
    matches!(
        class,
        AddressClass::Unspecified | AddressClass::Multicast | AddressClass::Broadcast
    )
}

#[test]
fn every_refused_range_is_classified() {
    for (text, class) in REFUSED {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(classify(ip), Some(*class), "{text}");
    }
    for text in PUBLIC {
        assert_eq!(classify(text.parse().unwrap()), None, "{text}");
    }
}

#[test]
fn every_refused_range_is_refused_as_a_literal_host() {
    let strict = UrlPolicy::new();
    let lenient = UrlPolicy::new().allow_private_targets(true);
    for (text, class) in REFUSED {
        let ip: IpAddr = text.parse().unwrap();
        let url = literal_url(ip);
        match strict.check_url(&url, Environment::Live) {
            Err(Error::UrlRefused(UrlDefect::Address(_, c))) => assert_eq!(c, *class, "{url}"),
            other => panic!("{url} was not refused: {other:?}"),
        }
        assert_eq!(
            lenient.check_url(&url, Environment::Live).is_ok(),
            !always_refused(*class),
            "{url} with private targets allowed"
        );
    }
    for text in PUBLIC {
        let url = literal_url(text.parse().unwrap());
        strict.check_url(&url, Environment::Live).unwrap();
    }
}

#[tokio::test]
async fn every_refused_range_is_refused_when_a_resolver_answers_it() {
    let strict = UrlPolicy::new();
    let lenient = UrlPolicy::new().allow_private_targets(true);
    let url = "https://hooks.customer.example/in";
    for (text, class) in REFUSED {
        let ip: IpAddr = text.parse().unwrap();
        let resolver = resolver_answering(&[ip]);
        match strict.check(url, Environment::Live, &resolver).await {
            Err(Error::UrlRefused(UrlDefect::Address(got, c))) => {
                assert_eq!((got, c), (ip, *class), "{text}");
            }
            other => panic!("{text} was not refused: {other:?}"),
        }
        assert_eq!(
            lenient
                .check(url, Environment::Live, &resolver)
                .await
                .is_ok(),
            !always_refused(*class)
        );
    }
    for text in PUBLIC {
        let resolver = resolver_answering(&[text.parse().unwrap()]);
        strict
            .check(url, Environment::Live, &resolver)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn one_private_answer_among_public_ones_refuses_the_host() {
    let resolver = resolver_answering(&[
        "93.184.216.34".parse().unwrap(),
        "10.0.0.5".parse().unwrap(),
    ]);
    let err = UrlPolicy::new()
        .check(
            "https://hooks.customer.example/",
            Environment::Live,
            &resolver,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::UrlRefused(UrlDefect::Address(_, AddressClass::Private))
    ));
}

#[tokio::test]
async fn unresolvable_and_empty_answers_are_refused() {
    let policy = UrlPolicy::new();
    let none = resolver_answering(&[]);
    assert!(matches!(
        policy
            .check("https://hooks.customer.example/", Environment::Live, &none)
            .await,
        Err(Error::UrlRefused(UrlDefect::Unresolvable))
    ));
    assert!(matches!(
        policy
            .check("https://elsewhere.example/", Environment::Live, &none)
            .await,
        Err(Error::UrlRefused(UrlDefect::Unresolvable))
    ));
}

#[test]
fn unusual_ipv4_spellings_are_normalised_before_the_check() {
    for url in [
        "https://2130706433/",
        "https://0x7f.1/",
        "https://017700000001/",
        "https://127.1/",
        "https://[::ffff:7f00:1]/",
    ] {
        assert!(
            UrlPolicy::new().check_url(url, Environment::Live).is_err(),
            "{url}"
        );
    }
}

#[test]
fn localhost_names_are_refused_without_dns() {
    for url in [
        "https://localhost/",
        "https://LOCALHOST./x",
        "https://a.localhost/",
    ] {
        assert!(UrlPolicy::new().check_url(url, Environment::Live).is_err());
        UrlPolicy::new()
            .allow_private_targets(true)
            .check_url(url, Environment::Live)
            .unwrap();
    }
}

#[test]
fn live_endpoints_need_https_and_sandbox_may_use_http() {
    let p = UrlPolicy::new();
    p.check_url("https://example.com/h", Environment::Live)
        .unwrap();
    p.check_url("https://example.com/h", Environment::Sandbox)
        .unwrap();
    p.check_url("http://example.com/h", Environment::Sandbox)
        .unwrap();
    for (url, env) in [
        ("http://example.com/h", Environment::Live),
        ("ftp://example.com/h", Environment::Sandbox),
        ("ws://example.com/h", Environment::Live),
        ("example.com/h", Environment::Live),
        ("/relative", Environment::Live),
    ] {
        assert!(p.check_url(url, env).is_err(), "{url}");
    }
    assert!(matches!(
        p.check_url("http://example.com/", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Scheme))
    ));
}

#[test]
fn the_development_setting_lets_live_endpoints_use_http_to_a_local_receiver_only() {
    let dev = UrlPolicy::new()
        .allow_private_targets(true)
        .allow_http_targets(true);
    assert!(dev.allows_http_targets());
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost:9000/hook",
        "http://api.localhost/hook",
        "http://[::1]:9000/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.20:8080/hook",
    ] {
        dev.check_url(url, Environment::Live)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    // Plain http to anything else stays refused for live endpoints, with its own reason.
    for url in ["http://hooks.example.com/in", "http://93.184.216.34/in"] {
        assert!(
            matches!(
                dev.check_url(url, Environment::Live),
                Err(Error::UrlRefused(UrlDefect::HttpToPublicHost))
            ),
            "{url}"
        );
    }
    // The other rules still hold over http.
    assert!(matches!(
        dev.check_url("http://user:pw@127.0.0.1/h", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Credentials))
    ));
    assert!(matches!(
        dev.check_url("http://0.0.0.0/h", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Address(
            _,
            AddressClass::Unspecified
        )))
    ));
    // https is untouched.
    dev.check_url("https://hooks.example.com/in", Environment::Live)
        .unwrap();
}

#[test]
fn http_to_a_local_receiver_still_needs_private_targets_allowed() {
    let http_only = UrlPolicy::new().allow_http_targets(true);
    assert!(matches!(
        http_only.check_url("http://127.0.0.1:9000/hook", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Address(
            _,
            AddressClass::Loopback
        )))
    ));
    assert!(matches!(
        http_only.check_url("http://localhost:9000/hook", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Address(
            _,
            AddressClass::Loopback
        )))
    ));
    // And without the setting, private targets alone do not open http for live endpoints.
    let private_only = UrlPolicy::new().allow_private_targets(true);
    assert!(!private_only.allows_http_targets());
    assert!(matches!(
        private_only.check_url("http://127.0.0.1:9000/hook", Environment::Live),
        Err(Error::UrlRefused(UrlDefect::Scheme))
    ));
}

#[test]
fn credentials_in_the_url_are_refused() {
    for url in [
        "https://user:pass@example.com/",
        "https://user@example.com/",
        "https://:pass@example.com/",
    ] {
        assert!(matches!(
            UrlPolicy::new().check_url(url, Environment::Live),
            Err(Error::UrlRefused(UrlDefect::Credentials))
        ));
    }
}

#[test]
fn secret_looking_query_parameters_are_refused() {
    let p = UrlPolicy::new();
    for query in [
        "token=abc",
        "secret=x",
        "key=1",
        "signature=s",
        "sig=s",
        "password=hunter2",
        "api_key=k",
        "apiKey=k",
        "API-KEY=k",
        "access_token=t",
        "auth_token=t",
        "client_secret=s",
        "X-Amz-Signature=abc",
        "session_id=1",
        "x=ako_9311c954_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
        "x=akt_9311c954_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
        "x=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "x=eyJhbGciOiJIUzI1NiJ9.e30.abc",
        "state=Xk3v9QpL2mZt7RwB4yN8cHj6sDf1gKa5",
        "x=%77hsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        let url = format!("https://example.com/in?ok=1&{query}");
        assert!(
            matches!(
                p.check_url(&url, Environment::Live),
                Err(Error::UrlRefused(UrlDefect::SecretInQuery(_)))
            ),
            "{query}"
        );
    }
}

#[test]
fn ordinary_query_parameters_are_accepted() {
    let p = UrlPolicy::new();
    for query in [
        "tenant=acme",
        "source=align&v=2",
        "id=550e8400-e29b-41d4-a716-446655440000",
        "monkey=banana",
        "page=12",
    ] {
        p.check_url(
            &format!("https://example.com/in?{query}"),
            Environment::Live,
        )
        .unwrap();
    }
}

#[test]
fn refusals_never_echo_the_url() {
    let url = "https://user:pw-9d8f7a@example.com/in?token=ako_secretvalue";
    let err = UrlPolicy::new()
        .check_url(url, Environment::Live)
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("pw-9d8f7a") && !shown.contains("secretvalue"),
        "{shown}"
    );
    let err = UrlPolicy::new()
        .check_url(
            "https://example.com/in?token=ako_secretvalue",
            Environment::Live,
        )
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secretvalue"), "{shown}");
}
