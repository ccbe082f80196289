//! [`PeerAddr`]: the client's address, in the request's extensions.

use std::net::{IpAddr, SocketAddr};

use http::Request;

/// The address of the client that sent a request. The server that accepts the connection puts
/// it into the request's extensions (the reference server does; with axum, serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` and add [`PeerAddr::from_connect_info`]
/// as a `map_request`, see `docs/embedding.md`). The key layer checks a key's allow-list
/// against it and the request log records it; without it, a key with an allow-list is refused
/// (fail closed) and the log has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The client's address of `req`: a [`PeerAddr`] in its extensions, or a bare
    /// `SocketAddr` there (as some servers put it).
    pub fn of<B>(req: &Request<B>) -> Option<SocketAddr> {
        let ext = req.extensions();
        ext.get::<Self>()
            .map(|p| p.0)
            .or_else(|| ext.get::<SocketAddr>().copied())
    }

    /// The client's IP address of `req`.
    pub fn ip_of<B>(req: &Request<B>) -> Option<IpAddr> {
        Self::of(req).map(|a| a.ip())
    }

    /// For `axum`: copies the address `axum::extract::ConnectInfo<SocketAddr>` holds into a
    /// [`PeerAddr`]. Takes the `ConnectInfo`'s inner address through a closure so this crate
    /// needs no axum dependency:
    /// `.map_request(PeerAddr::from_connect_info(|c: &ConnectInfo<SocketAddr>| c.0))`.
    pub fn from_connect_info<T, B>(
        get: impl Fn(&T) -> SocketAddr + Clone + Send + Sync + 'static,
    ) -> impl Fn(Request<B>) -> Request<B> + Clone + Send + Sync + 'static
    where
        T: Send + Sync + 'static,
    {
        move |mut req: Request<B>| {
            if let Some(addr) = req.extensions().get::<T>().map(&get) {
                req.extensions_mut().insert(Self(addr));
            }
            req
        }
    }
}
