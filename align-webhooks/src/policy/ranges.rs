//! Which IP addresses are ordinary public unicast destinations.
//!
//! Written against the IANA IPv4 and IPv6 special-purpose address registries. std's
//! `is_global` is still unstable, so the table lives here, with a test per range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public unicast destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0`, `::` and `0.0.0.0/8` ("this network").
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 `10/8`, `172.16/12`, `192.168/16`, and IPv6 unique-local `fc00::/7`.
    Private,
    /// Carrier-grade NAT shared space `100.64.0.0/10`.
    SharedCgnat,
    /// `169.254/16`, `fe80::/10` (and the deprecated site-local `fec0::/10`).
    LinkLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// Everything else that is reserved or not globally routable: `192.0.0/24`,
    /// `192.88.99/24`, `240/4`, IPv4-compatible `::/96`, `100::/64`, `2001::/23`,
    /// `64:ff9b:1::/48`, `5f00::/16`, anything outside `2000::/3`.
    Reserved,
}

/// Classifies `ip`: `None` for an ordinary public unicast address.
///
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` is in the IPv4 network `net`/`bits`: the same prefix test as [`in_v6`], on
/// both addresses in the top 32 bits.
fn in_v4(ip: u32, net: [u8; 4], bits: u32) -> bool {
    let top = |v4: u32| u128::from(v4) << 96;
    in_v6(top(ip), top(u32::from_be_bytes(net)), bits)
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let n = u32::from(ip);
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([255, 255, 255, 255], 32, AddressClass::Broadcast),
        ([0, 0, 0, 0], 8, AddressClass::Unspecified),
        ([10, 0, 0, 0], 8, AddressClass::Private),
        ([100, 64, 0, 0], 10, AddressClass::SharedCgnat),
        ([127, 0, 0, 0], 8, AddressClass::Loopback),
        ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
        ([172, 16, 0, 0], 12, AddressClass::Private),
        ([192, 0, 0, 0], 24, AddressClass::Reserved),
        ([192, 0, 2, 0], 24, AddressClass::Documentation),
        ([192, 88, 99, 0], 24, AddressClass::Reserved),
        ([192, 168, 0, 0], 16, AddressClass::Private),
        ([198, 18, 0, 0], 15, AddressClass::Benchmarking),
        ([198, 51, 100, 0], 24, AddressClass::Documentation),
        ([203, 0, 113, 0], 24, AddressClass::Documentation),
        ([224, 0, 0, 0], 4, AddressClass::Multicast),
        ([240, 0, 0, 0], 4, AddressClass::Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, bits, _)| in_v4(n, *net, *bits))
        .map(|(_, _, class)| *class)
}

/// Whether `ip` is in the IPv6 network `net`/`bits` (its first `bits` bits are `net`'s).
fn in_v6(ip: u128, net: u128, bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    ip & mask == net & mask
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass as C;
    let n = u128::from(ip);
    if n == 0 {
        return Some(C::Unspecified);
    }
    if n == 1 {
        return Some(C::Loopback);
    }
    // Addresses that carry an IPv4 address are as good as that address.
    if in_v6(n, 0xffff_0000_0000, 96) || in_v6(n, 0x0064_ff9b << 96, 96) {
        return classify_v4(Ipv4Addr::from((n & 0xffff_ffff) as u32));
    }
    if in_v6(n, 0x2002 << 112, 16) {
        return classify_v4(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    const TABLE: &[(u128, u32, AddressClass)] = &[
        (0, 96, AddressClass::Reserved), // IPv4-compatible (deprecated)
        (0x0064_ff9b_0001 << 80, 48, AddressClass::Reserved), // local-use NAT64
        (0x0100 << 112, 64, AddressClass::Reserved), // discard-only
        (0x2001_0002 << 96, 48, AddressClass::Benchmarking),
        (0x2001_0db8 << 96, 32, AddressClass::Documentation),
        (0x2001 << 112, 23, AddressClass::Reserved), // IETF protocol assignments (Teredo, ORCHID…)
        (0x3fff << 112, 20, AddressClass::Documentation),
        (0x5f00 << 112, 16, AddressClass::Reserved), // SRv6 SIDs
        (0xfc00 << 112, 7, AddressClass::Private),   // unique local
        (0xfe80 << 112, 10, AddressClass::LinkLocal),
        (0xfec0 << 112, 10, AddressClass::LinkLocal), // site-local (deprecated)
        (0xff00 << 112, 8, AddressClass::Multicast),
    ];
    if let Some((_, _, class)) = TABLE.iter().find(|(net, bits, _)| in_v6(n, *net, *bits)) {
        return Some(*class);
    }
    // Only 2000::/3 is allocated as global unicast.
    if !in_v6(n, 0x2000 << 112, 3) {
        return Some(C::Reserved);
    }
    None
}
