//! Siesta: scale-to-zero HTTP functions for Kubernetes.
//!
//! The folders mirror the architecture in DESIGN.md: `api` holds the
//! `Function` resource, `controller` reconciles it, `autoscaler` decides
//! replicas, `activator` is the request path.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod api;
pub mod crd;
