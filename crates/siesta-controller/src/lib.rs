//! The Siesta controller: reconciles each `Function` into a Deployment and a
//! Service, keeps its status honest, and takes activation signals.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

mod error;
pub mod metrics;
pub mod resources;

pub use error::{Error, Result};
