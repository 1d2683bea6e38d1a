//! Code generated from `proto/` by `build.rs`: the messages and clients
//! of `ssebridge.v1` and the event catalogue `events.v1`, and the encoded
//! descriptor set. The publisher's server side, with its hand-written
//! request types, is [`server`].

#[allow(clippy::all, missing_docs)]
pub mod ssebridge {
    pub mod v1 {
        tonic::include_proto!("ssebridge.v1");
    }
}

#[allow(clippy::all, missing_docs)]
pub mod events {
    pub mod v1 {
        tonic::include_proto!("events.v1");
    }
}

/// The encoded descriptor set of every file in `proto/` and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The servers of `ssebridge.v1`, generated apart from the messages and
/// clients above so that the publisher server can take [`PublishRequest`].
pub mod server;
