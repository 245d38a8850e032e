//! rehydrate: read a registry's storage layout directly and rebuild its contents elsewhere.
//!
//! Data flows one way: storage keys (`storage`, `layout`) -> repositories and tags (`scan`) -> what is
//! written out (`inventory`, `pipeline`). `cli` and `main.rs` sit on top.

pub mod cli;
pub mod copy;
pub mod filter;
pub mod inventory;
pub mod journal;
pub mod layout;
pub mod net;
pub mod pipeline;
pub mod registry;
pub mod scan;
pub mod shard;
pub mod storage;
pub mod synth;
