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

/// The servers of `ssebridge.v1`, generated apart from the messages and
/// clients above so that the publisher server can take [`PublishRequest`].
pub mod server {
    use bytes::Bytes;

    /// `ssebridge.v1.PublishRequest` as the server reads it: field for
    /// field the generated message, except that the event is kept as the
    /// bytes of its encoding. The schema decodes those once, dynamically;
    /// decoding into the generated `Event` first and encoding it again for
    /// that cost about a tenth of the bridge's work per publish.
    ///
    /// The event is `optional` so that an absent event (`event is
    /// required`) stays apart from an empty one (`event.payload: …`). A
    /// sender that splits one event over repeated fields (legal protobuf,
    /// merged by generated decoders) has only the last part read; no
    /// protobuf library does that on its own.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublishRequest {
        #[prost(message, optional, tag = "1")]
        pub channel: Option<Channel>,
        #[prost(bytes = "bytes", optional, tag = "2")]
        pub event: Option<Bytes>,
        #[prost(string, tag = "3")]
        pub idempotency_key: String,
    }

    /// `ssebridge.v1.Channel` as the server reads it: its parts are slices
    /// of the request rather than three new strings per publish, and are
    /// checked as text where they are parsed.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Channel {
        #[prost(bytes = "bytes", tag = "1")]
        pub prefix: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub tenant_id: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub resource_id: Bytes,
    }

    impl Channel {
        /// Parses the channel. A part that is not UTF-8 (which a generated
        /// decoder would refuse as a broken message) fails as that part,
        /// in the order [`crate::channel::Channel::from_parts`] checks them.
        pub fn parse(&self) -> Result<crate::channel::Channel, crate::channel::ChannelError> {
            // Not UTF-8: a stand-in that no part's pattern accepts.
            fn text(b: &Bytes) -> &str {
                std::str::from_utf8(b).unwrap_or("\u{fffd}")
            }
            crate::channel::Channel::from_parts(
                text(&self.prefix),
                text(&self.tenant_id),
                text(&self.resource_id),
            )
        }
    }

    include!(concat!(env!("OUT_DIR"), "/server/ssebridge.v1.rs"));

    #[cfg(test)]
    mod tests {
        use prost::Message;

        use super::super::events::v1::{Event, ScanProgress, event::Payload};
        use super::super::ssebridge::v1 as pb;

        fn client_request(event: Option<Event>) -> pb::PublishRequest {
            pb::PublishRequest {
                channel: Some(pb::Channel {
                    prefix: "scans".into(),
                    tenant_id: "0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80".into(),
                    resource_id: "r1".into(),
                }),
                event,
                idempotency_key: "k-1".into(),
            }
        }

        #[test]
        fn reads_what_the_generated_client_sends() {
            let event = Event {
                payload: Some(Payload::ScanProgress(ScanProgress {
                    scan_id: "s".into(),
                    checked: 1,
                    total: 2,
                    ..Default::default()
                })),
            };
            let sent = client_request(Some(event.clone()));
            let read = super::PublishRequest::decode(sent.encode_to_vec().as_slice()).unwrap();
            let channel = read.channel.as_ref().unwrap().parse().unwrap();
            assert_eq!(
                channel.as_str(),
                "scans:0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80:r1"
            );
            assert_eq!(read.idempotency_key, "k-1");
            assert_eq!(read.event.as_deref(), Some(&event.encode_to_vec()[..]));
            // And back: the same bytes on the wire.
            assert_eq!(read.encode_to_vec(), sent.encode_to_vec());
        }

        #[test]
        fn a_part_that_is_not_utf8_fails_as_that_part() {
            use crate::channel::ChannelError;
            let ok = |s: &str| bytes::Bytes::copy_from_slice(s.as_bytes());
            let bad = bytes::Bytes::from_static(b"\xff");
            let channel = |prefix, tenant_id, resource_id| super::Channel {
                prefix,
                tenant_id,
                resource_id,
            };
            let tenant = || ok("0b6e1a52-3a8e-4a47-9d0e-2c4f5d6e7f80");
            let cases = [
                (
                    channel(bad.clone(), tenant(), ok("r")),
                    ChannelError::Prefix,
                ),
                (
                    channel(ok("scans"), bad.clone(), ok("r")),
                    ChannelError::Tenant,
                ),
                (
                    channel(ok("scans"), tenant(), bad.clone()),
                    ChannelError::Resource,
                ),
                // The first broken part is reported, as for text.
                (channel(ok("Scans"), tenant(), bad), ChannelError::Prefix),
            ];
            for (c, want) in cases {
                assert_eq!(c.parse(), Err(want));
            }
        }

        #[test]
        fn an_absent_event_is_not_an_empty_one() {
            let absent = client_request(None).encode_to_vec();
            let read = super::PublishRequest::decode(absent.as_slice()).unwrap();
            assert_eq!(read.event, None);
            let empty = client_request(Some(Event::default())).encode_to_vec();
            let read = super::PublishRequest::decode(empty.as_slice()).unwrap();
            assert_eq!(read.event.as_deref(), Some(&[][..]));
        }
    }
}
