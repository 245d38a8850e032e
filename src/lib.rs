//! rehydrate: read a registry's storage layout directly and rebuild its contents elsewhere.
//!
//! Data flows one way: storage keys (`storage`, `layout`) -> repositories and tags (`scan`, `shard`) ->
//! selection and names (`filter`) -> copies into the target (`copy`, `registry`), recorded in the
//! `journal`; `pipeline` runs it all. Around it: `net` (every HTTP request, retries), `limit` (rates),
//! `log`, `progress` and `metrics` (what the run tells its operator). `cli` and `main.rs` sit on top.

pub mod cli;
pub mod copy;
pub mod filter;
pub mod http;
pub mod journal;
pub mod layout;
pub mod registry;
pub mod report;
pub mod run;
pub mod scan;
pub mod shard;
pub mod storage;
pub mod sync;
pub mod synth;
