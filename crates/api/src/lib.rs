//! The Siesta API: the `Function` custom resource (`siesta.dev/v1alpha1`): the user-facing API.
//! Names follow DESIGN.md; ranges and enums live in the OpenAPI schema so the
//! apiserver refuses what it can, and `validate` reports the rest on status.

pub mod cli;
pub mod cold_start;
pub mod crd;
pub mod decisions;
pub mod duration;
mod function;
pub mod lifecycle;
pub mod names;
pub mod quantity;
pub mod schedule;
pub mod usage;
mod validate;
pub mod watch_backoff;

pub use function::*;
pub use validate::{SpecError, validate};

/// The label on every pod, Deployment and Service that belongs to a Function;
/// its value is the Function's name.
pub const FUNCTION_LABEL: &str = "siesta.dev/function";
/// The field manager for every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "siesta-controller";
