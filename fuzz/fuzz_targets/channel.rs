//! Channel names from the network: parsing never panics, and whatever it
//! accepts is canonical (it prints back to a name that parses to itself and
//! agrees with the structured gRPC form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_bridge::channel::Channel;

fuzz_target!(|input: &str| {
    let Ok(channel) = Channel::parse(input) else {
        return;
    };
    let printed = channel.to_string();
    assert_eq!(Channel::parse(&printed).as_ref(), Ok(&channel));
    assert_eq!(printed.matches(':').count(), 2);
    let tenant = channel.tenant().to_string();
    let from_parts = Channel::from_parts(channel.prefix(), &tenant, channel.resource());
    assert_eq!(from_parts.as_ref(), Ok(&channel));
    assert!(!printed.bytes().any(|b| b.is_ascii_control() || b == b' '));
});
