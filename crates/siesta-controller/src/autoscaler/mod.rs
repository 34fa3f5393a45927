//! The autoscaler.
pub mod decision;
