//! Specification tests for `align-ratelimit`, one module per concern.

#[cfg(test)]
mod accuracy;
#[cfg(test)]
mod concurrency;
#[cfg(test)]
mod keyed;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod support;
