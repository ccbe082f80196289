//! What the privacy policy promises, as defaults: retention per stream, anonymisation age,
//! and how an IP address is coarsened.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::TimeDelta;

use crate::record::Stream;

/// The /24 network of an IPv4 address, the /48 of an IPv6 address (host bits zeroed).
///
/// ```
/// use align_audit::coarsen_ip;
/// assert_eq!(coarsen_ip("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
/// assert_eq!(coarsen_ip("2001:db8:1:2::7".parse().unwrap()).to_string(), "2001:db8:1::");
/// ```
pub fn coarsen_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[6..].fill(0);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }
}

/// Retention and anonymisation ages per stream; see [`AuditSink::apply_policy`].
///
/// [`AuditSink::apply_policy`]: crate::AuditSink::apply_policy
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacyPolicy {
    /// How long request-log records are kept (default 30 days).
    pub request_retention: TimeDelta,
    /// How long audit records are kept (default 400 days).
    pub audit_retention: TimeDelta,
    /// Age after which request-log IPs are coarsened and user agents dropped (default 7 days).
    pub request_anonymise_after: TimeDelta,
    /// Age after which audit-log IPs are coarsened and user agents dropped (default 90 days:
    /// long enough to investigate an incident).
    pub audit_anonymise_after: TimeDelta,
}

impl Default for PrivacyPolicy {
    fn default() -> Self {
        Self {
            request_retention: TimeDelta::days(30),
            audit_retention: TimeDelta::days(400),
            request_anonymise_after: TimeDelta::days(7),
            audit_anonymise_after: TimeDelta::days(90),
        }
    }
}

impl PrivacyPolicy {
    /// How long records of `stream` are kept.
    pub fn retention(&self, stream: Stream) -> TimeDelta {
        match stream {
            Stream::Request => self.request_retention,
            Stream::Audit => self.audit_retention,
        }
    }

    /// Age after which records of `stream` are anonymised.
    pub fn anonymise_after(&self, stream: Stream) -> TimeDelta {
        match stream {
            Stream::Request => self.request_anonymise_after,
            Stream::Audit => self.audit_anonymise_after,
        }
    }
}

/// What one [`apply_policy`](crate::AuditSink::apply_policy) run did, per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyOutcome {
    /// Request-log records removed.
    pub request_purged: u64,
    /// Audit records removed.
    pub audit_purged: u64,
    /// Request-log records anonymised.
    pub request_anonymised: u64,
    /// Audit records anonymised.
    pub audit_anonymised: u64,
}
