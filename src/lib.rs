//! rehydrate: read a registry's storage layout directly and rebuild its contents elsewhere.
//!
//! Data flows one way: storage keys (`storage`, `layout`) -> repositories and tags (`scan`, `shard`) ->
//! selection and names (`filter`) -> copies into the target (`copy`, `registry`), recorded in the
//! `journal`; `run` and `sync` run the commands, `cli` turns flags into them. Under the domain, two
//! layers of plumbing that import nothing above them: `http` (every request: limits, windows, retries,
//! request metrics) and `report` (log lines, the terminal, progress, the metrics endpoint).
//! `docs/design.md` draws the layers.

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
