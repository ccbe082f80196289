//! Specification tests for `align-ratelimit`, one module per concern.

#[cfg(test)]
mod accuracy;
#[cfg(test)]
mod backend;
#[cfg(test)]
mod concurrency;
#[cfg(test)]
mod keyed;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod quota;
#[cfg(test)]
mod redis;
#[cfg(test)]
mod shared;
#[cfg(test)]
mod support;
#[cfg(test)]
mod windows;
#[cfg(test)]
mod windows_redis;
