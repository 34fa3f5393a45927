//! The Siesta activator: the request path. Routes by Host or path, parks
//! requests while a function is at zero, wakes it, and balances warm traffic.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod route;
