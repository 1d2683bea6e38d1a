//! Code generated from `proto/` by `build.rs`.
#![allow(clippy::all, missing_docs)]

pub mod ssebridge {
    pub mod v1 {
        tonic::include_proto!("ssebridge.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("events.v1");
    }
}

/// The encoded descriptor set of every file in `proto/` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
