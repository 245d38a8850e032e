//! What a target's control plane adds to its registry API, as the copy engine sees it. Harbor has one
//! (its REST API, and its rules for reading the registry API's answers); a plain registry has none. The
//! copy engine knows the target only through `RegistryClient` and this trait, never Harbor itself.

use std::future::Future;
use std::pin::Pin;

use super::client::RegistryError;
use super::refusal::RefusalClass;
use crate::layout::Digest;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a control plane makes of a failed registry call.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Refused by one of the target's policies (never tried again).
    #[error("{message}")]
    Refused { class: RefusalClass, message: String },
    /// Nothing more to say than the registry's answer.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The control plane itself failed.
    #[error("{0}")]
    Failed(String),
}

pub trait ControlPlane: Send + Sync {
    /// Reads a manifest HEAD the registry answered with `error`: the digest the registry would not
    /// give (a pull-side policy blocks it: `Ok(Some)`), no such manifest (`Ok(None)`), or what the
    /// failure means on this target.
    fn read_failed_head<'a>(
        &'a self,
        repository: &'a str,
        reference: &'a str,
        error: RegistryError,
    ) -> BoxFuture<'a, Result<Option<Digest>, ControlError>>;

    /// The part of `repository` a write is charged to (Harbor: its project's quota). Two writes of one
    /// digest into it at once would both be charged, so the copy engine makes them one after the other.
    fn charged_to<'r>(&self, repository: &'r str) -> &'r str;
}
