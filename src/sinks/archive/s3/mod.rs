//! `[sinks.<id>.s3]`: the archive's sealed segments and digests copied to S3 (or any
//! S3-compatible store), optionally under Object Lock, so WORM storage keeps what the
//! signed chain only proves. Modules: `config` (keys and checks), [`sigv4`] (request
//! signing), [`credentials`] (the AWS credential chain), [`client`] (the S3 calls),
//! [`upload`] (order, confirmation, durable progress, pruning), [`verify`] (`verify
//! s3://…`).
//!
//! The client is hand-written: SigV4 over ring's HMAC-SHA256 (ring is already linked for
//! rustls and the archive's signatures) on the shared reqwest layer (our TLS rules, no
//! redirects, capped error bodies). The archive needs a handful of calls (PutObject,
//! HeadObject, GetObjectLockConfiguration, ListObjectsV2, GetObject); the official
//! `aws-sdk-s3` + `aws-config` would add some 150 crates to a build CI runs on 2 cores,
//! defaults to aws-lc-rs (cmake and a C toolchain at build time, a second crypto stack
//! next to ring), and brings its own HTTP stack beside ours. The price is owning the
//! credential chain ([`credentials`]: environment, shared profile, web identity, IMDSv2),
//! which is documented there with what it does not support.
//!
//! Must not: acknowledge events later than the local fsync (uploads are asynchronous);
//! prune a local segment before the store confirmed it; log credentials.

pub mod client;
mod config;
pub mod credentials;
pub mod sigv4;
pub mod upload;
pub mod verify;

pub use config::{LockMode, ObjectLock, S3Config};
