//! Which URLs an endpoint may have, and which addresses a delivery may connect to.
//!
//! The same [`UrlPolicy`] runs when an endpoint is registered and again at every delivery
//! (through the dispatcher's connector), so a host name that later resolves to a private
//! address (DNS rebinding) is still refused.

mod query;
mod ranges;

use std::fmt;
use std::net::IpAddr;

use align_core::Environment;
use async_trait::async_trait;
use url::{Host, Url};

pub use ranges::{AddressClass, classify};

use crate::error::{Error, Result};

/// Why an endpoint URL, or the address it resolves to, is refused. Never contains the URL
/// itself, which may hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlDefect {
    /// Not an absolute URL.
    #[error("not a valid absolute URL")]
    Unparsable,
    /// Scheme other than `https` (or `http` for sandbox endpoints).
    #[error("scheme must be https (http is allowed for sandbox endpoints only)")]
    Scheme,
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The URL carries a user name or password.
    #[error("the URL must not contain credentials (user:password@)")]
    Credentials,
    /// A query parameter's name or value looks like a secret.
    #[error("query parameter `{0}` looks like a secret; authenticate with the signature instead")]
    SecretInQuery(String),
    /// The URL has a fragment, which is never sent and usually a mistake.
    #[error("the URL must not have a fragment")]
    Fragment,
    /// The host is, or resolves to, an address that is not public unicast.
    #[error("address {0} is not a public destination ({1:?})")]
    Address(IpAddr, AddressClass),
    /// The host name did not resolve.
    #[error("the host name did not resolve")]
    Unresolvable,
    /// A live endpoint over `http` whose host is not on this machine or a private network:
    /// [`UrlPolicy::allow_http_targets`] lets live endpoints use `http` only for local
    /// receivers (a non-public IP address or a `localhost` name).
    #[error(
        "http is allowed for live endpoints only to a local receiver (a loopback or private IP address, or localhost); use https"
    )]
    HttpToPublicHost,
}

/// Turns a host name into addresses. The dispatcher and [`UrlPolicy::check`] use it, so a test
/// can inject answers (including a private address, to test DNS rebinding).
#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// All addresses `host` resolves to.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|addr| addr.ip())
            .collect())
    }
}

/// Rules for endpoint URLs and destination addresses.
///
/// ```
/// use align_core::Environment;
/// use align_webhooks::UrlPolicy;
/// let policy = UrlPolicy::default();
/// assert!(policy.check_url("https://hooks.example.com/in", Environment::Live).is_ok());
/// assert!(policy.check_url("http://hooks.example.com/in", Environment::Live).is_err());
/// assert!(policy.check_url("http://hooks.example.com/in", Environment::Sandbox).is_ok());
/// assert!(policy.check_url("https://10.0.0.7/in", Environment::Live).is_err());
/// assert!(policy.check_url("https://example.com/in?token=abc", Environment::Live).is_err());
///
/// // Development: a receiver on this machine, over plain http, for live endpoints too.
/// let dev = UrlPolicy::new().allow_private_targets(true).allow_http_targets(true);
/// assert!(dev.check_url("http://127.0.0.1:9000/in", Environment::Live).is_ok());
/// assert!(dev.check_url("http://localhost:9000/in", Environment::Live).is_ok());
/// assert!(dev.check_url("http://hooks.example.com/in", Environment::Live).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    allow_private_targets: bool,
    allow_http_targets: bool,
}

impl UrlPolicy {
    /// The strict default: public unicast destinations only, `https` for live endpoints.
    pub const fn new() -> Self {
        Self {
            allow_private_targets: false,
            allow_http_targets: false,
        }
    }

    /// **For development.** Lets live endpoints use plain `http://` when the receiver is local:
    /// the URL's host is a non-public IP address (loopback, private, link-local, …) or a
    /// `localhost` name (`webhooks.allow_http_targets`). Such hosts are refused anyway unless
    /// [`Self::allow_private_targets`] is on too, so a developer running a receiver on their
    /// machine turns on both. Live `http` to any other host stays refused
    /// ([`UrlDefect::HttpToPublicHost`]): a signed payload never crosses a public network in
    /// clear. Sandbox endpoints may use `http` whatever this says.
    #[must_use]
    pub const fn allow_http_targets(mut self, allow: bool) -> Self {
        self.allow_http_targets = allow;
        self
    }

    /// Whether live endpoints may use `http` to a local receiver.
    pub const fn allows_http_targets(&self) -> bool {
        self.allow_http_targets
    }

    /// Allows private, loopback, link-local and other non-public destinations
    /// (`webhooks.allow_private_targets`). Unspecified, multicast and broadcast addresses stay
    /// refused: nothing can receive a webhook there.
    #[must_use]
    pub const fn allow_private_targets(mut self, allow: bool) -> Self {
        self.allow_private_targets = allow;
        self
    }

    /// Whether non-public destinations are allowed.
    pub const fn allows_private_targets(&self) -> bool {
        self.allow_private_targets
    }

    /// Checks one destination address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlDefect> {
        match classify(ip) {
            None => Ok(()),
            Some(
                class @ (AddressClass::Unspecified
                | AddressClass::Multicast
                | AddressClass::Broadcast),
            ) => Err(UrlDefect::Address(ip, class)),
            Some(_) if self.allow_private_targets => Ok(()),
            Some(class) => Err(UrlDefect::Address(ip, class)),
        }
    }

    /// Checks everything that can be checked without DNS: scheme for the environment, no
    /// credentials, no secret-looking query parameters, no fragment, and a literal IP host's
    /// address.
    pub fn check_url(&self, url: &str, environment: Environment) -> Result<Url> {
        let parsed = Url::parse(url).map_err(|_| UrlDefect::Unparsable)?;
        match (parsed.scheme(), environment) {
            ("https", _) | ("http", Environment::Sandbox) => {}
            ("http", Environment::Live) if self.allow_http_targets => {
                let local = match parsed.host() {
                    Some(Host::Ipv4(ip)) => classify(IpAddr::V4(ip)).is_some(),
                    Some(Host::Ipv6(ip)) => classify(IpAddr::V6(ip)).is_some(),
                    Some(Host::Domain(name)) => is_local_name(name),
                    // Refused below for its missing host.
                    None => true,
                };
                if !local {
                    return Err(UrlDefect::HttpToPublicHost.into());
                }
            }
            _ => return Err(UrlDefect::Scheme.into()),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlDefect::Credentials.into());
        }
        if parsed.fragment().is_some() {
            return Err(UrlDefect::Fragment.into());
        }
        query::check(&parsed)?;
        match parsed.host() {
            None => return Err(UrlDefect::NoHost.into()),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => {
                if !self.allow_private_targets && is_local_name(name) {
                    return Err(UrlDefect::Address(
                        IpAddr::from([127, 0, 0, 1]),
                        AddressClass::Loopback,
                    )
                    .into());
                }
            }
        }
        Ok(parsed)
    }

    /// [`UrlPolicy::check_url`], then resolves the host and checks every address it
    /// resolves to (one bad address refuses the URL: an attacker may mix them).
    pub async fn check(
        &self,
        url: &str,
        environment: Environment,
        resolver: &dyn Resolver,
    ) -> Result<Url> {
        let parsed = self.check_url(url, environment)?;
        if let Some(Host::Domain(name)) = parsed.host() {
            self.check_resolved(name, resolver).await?;
        }
        Ok(parsed)
    }

    /// Resolves `host` and checks every address; returns them for connecting.
    pub async fn check_resolved(&self, host: &str, resolver: &dyn Resolver) -> Result<Vec<IpAddr>> {
        let addrs = resolver
            .resolve(host)
            .await
            .map_err(|_| Error::UrlRefused(UrlDefect::Unresolvable))?;
        if addrs.is_empty() {
            return Err(UrlDefect::Unresolvable.into());
        }
        for ip in &addrs {
            self.check_ip(*ip)?;
        }
        Ok(addrs)
    }
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost")
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
