//! Integration tests of the alert layer through the library API: real SQLite file, real
//! migrations, a real HTTP server on 127.0.0.1 checking each exact request.

#[path = "alerts/common.rs"]
mod common;
#[path = "alerts/dedup.rs"]
mod dedup;
#[path = "alerts/delivery.rs"]
mod delivery;
#[path = "alerts/mock.rs"]
mod mock;
#[path = "alerts/parked.rs"]
mod parked;
#[path = "alerts/secrets.rs"]
mod secrets;
#[path = "alerts/sinks.rs"]
mod sinks;
#[path = "alerts/worker.rs"]
mod worker;
