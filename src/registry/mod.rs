//! The target side: a registry's `/v2/` API with its authentication, the credentials to use, and
//! Harbor's own REST API where the target is a Harbor.

pub mod auth;
pub mod client;
pub mod control;
pub mod credentials;
mod error_code;
pub mod harbor;
pub mod refusal;
pub mod target;
