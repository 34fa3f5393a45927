//! The Siesta activator: the request path. Routes by Host or path, parks
//! requests while a function is at zero, wakes it, and balances warm traffic.

pub mod admin;
mod ascii;
pub mod body;
pub mod cold_record;
mod config;
pub mod discovery;
pub mod dispatch;
mod field_scan;
pub mod forwarded;
pub mod h1_server;
pub mod http1_pool;
pub mod http1_wire;
pub mod index;
#[doc(hidden)]
pub mod invariants;
pub mod kept_timer;
pub mod metrics;
pub mod normalize;
pub mod park_budget;
pub mod probe;
pub mod proxy;
pub mod request_body;
pub mod request_size;
pub mod route;
pub mod server;
pub mod serving;
pub mod standalone;
mod startup;
pub mod stranded;
pub mod target;
pub mod trust;
pub mod upstream;
pub mod wake;

pub use config::{Config, parse_duration};
pub use siesta_api::lifecycle::shutdown_signal;
pub use startup::{Activator, Control, run};
