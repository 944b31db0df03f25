//! Fuzzing the decoder of untrusted frames with proptest: arbitrary bytes and strings,
//! JSON-ish text, and structure-aware JSON (every client message's fields, each valid or
//! replaced by arbitrary JSON, with fields dropped or added and the text cut or spliced).
//! The property (`properties/decode.rs`, shared with the libFuzzer target in `fuzz/`): decode
//! never panics, every `Ok` re-encodes and decodes to the same message, every `Err` maps to a
//! decode failure's protocol error code.
//!
//! Case counts are sized for CI (10,000 per suite, about a second in all); `PROPTEST_CASES=N`
//! sets every suite's count for a long run, e.g. `PROPTEST_CASES=1000000 cargo test --release
//! -p pairlab-shared --test fuzz_decode`. Failing cases are kept in
//! `fuzz_decode.proptest-regressions` and replayed first.

#[path = "properties/decode.rs"]
mod properties;

use pairlab_shared::ClientMessage;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// What one field of a client message holds, for generating a valid value of it.
#[derive(Debug, Clone, Copy)]
enum Field {
    Subject,
    Uuid,
    OptText,
    Bool,
    Count,
    SmallCount,
    OptMs,
    Samples,
    SignalType,
    Payload,
    Level,
    Trigger,
    Outcome,
    ConnectionKind,
    CandidateType,
    Protocol,
    RelayProtocol,
    Peers,
}

/// Every client message: its `type` and its fields (PROTOCOL.md).
const MESSAGES: &[(&str, &[(&str, Field)])] = &[
    (
        "hello",
        &[
            ("subject_id", Field::Subject),
            ("scene_id", Field::OptText),
            ("resume_token", Field::OptText),
            ("link_signature", Field::OptText),
        ],
    ),
    ("pong", &[("seq", Field::Count)]),
    ("leave", &[]),
    ("probe_ready", &[("probe_session_id", Field::Uuid)]),
    (
        "probe_signal",
        &[
            ("probe_session_id", Field::Uuid),
            ("target_index", Field::SmallCount),
            ("signal_type", Field::SignalType),
            ("payload", Field::Payload),
        ],
    ),
    (
        "probe_result",
        &[
            ("probe_session_id", Field::Uuid),
            ("success", Field::Bool),
            ("rtt_ms", Field::OptMs),
            ("samples_ms", Field::Samples),
            ("stats_rtt_ms", Field::OptMs),
        ],
    ),
    (
        "webrtc_signal",
        &[
            ("game_id", Field::Uuid),
            ("target_index", Field::SmallCount),
            ("signal_type", Field::SignalType),
            ("payload", Field::Payload),
        ],
    ),
    (
        "p2p_connection_type",
        &[
            ("game_id", Field::Uuid),
            ("peer_index", Field::SmallCount),
            ("connection_type", Field::ConnectionKind),
            ("local_candidate_type", Field::CandidateType),
            ("remote_candidate_type", Field::CandidateType),
            ("protocol", Field::Protocol),
            ("relay_protocol", Field::RelayProtocol),
            ("connect_ms", Field::OptMs),
        ],
    ),
    (
        "p2p_quality",
        &[
            ("game_id", Field::Uuid),
            ("peer_index", Field::SmallCount),
            ("level", Field::Level),
            ("rtt_ms", Field::OptMs),
        ],
    ),
    (
        "p2p_ice_restart",
        &[
            ("game_id", Field::Uuid),
            ("peer_index", Field::SmallCount),
            ("attempt", Field::SmallCount),
            ("trigger", Field::Trigger),
            ("outcome", Field::Outcome),
            ("duration_ms", Field::OptMs),
        ],
    ),
    (
        "p2p_connection_failed",
        &[
            ("game_id", Field::Uuid),
            ("peer_index", Field::SmallCount),
            ("attempts", Field::SmallCount),
        ],
    ),
    (
        "episode_summary",
        &[
            ("game_id", Field::Uuid),
            ("episode", Field::SmallCount),
            ("frames", Field::Count),
            ("inputs_sent", Field::Count),
            ("peers", Field::Peers),
        ],
    ),
];

/// Any JSON value, nested up to three deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,16}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A number of milliseconds: mostly plausible, sometimes any float (negative, huge, or NaN
/// and infinities, which JSON writes as `null`).
fn ms() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0.0..2_000.0f64).prop_map(Value::from),
        1 => (0u32..5_000).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
    ]
}

fn one_of(words: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(words).prop_map(Value::from)
}

/// A valid value for `field` (valid as to its JSON shape; numbers may still break the rules
/// `decode` checks beyond serde).
fn valid(field: Field) -> BoxedStrategy<Value> {
    match field {
        Field::Subject => "[A-Za-z0-9._:@-]{1,130}".prop_map(Value::from).boxed(),
        Field::Uuid => "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
            .prop_map(Value::from)
            .boxed(),
        Field::OptText => prop::option::of("[ -~]{0,20}")
            .prop_map(Value::from)
            .boxed(),
        Field::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Field::Count => any::<u32>().prop_map(Value::from).boxed(),
        Field::SmallCount => (0u32..120).prop_map(Value::from).boxed(),
        Field::OptMs => prop_oneof![1 => Just(Value::Null), 4 => ms()].boxed(),
        Field::Samples => prop::collection::vec(ms(), 0..12)
            .prop_map(Value::Array)
            .boxed(),
        Field::SignalType => one_of(&["offer", "answer", "ice_candidate"]).boxed(),
        Field::Payload => prop_oneof![
            Just(Value::Null),
            "[ -~]{0,40}".prop_map(|sdp| json!({ "sdp": sdp })),
            (
                "[ -~]{0,40}",
                prop::option::of("[0-9a-z]{0,3}"),
                prop::option::of(any::<u16>())
            )
                .prop_map(|(candidate, mid, index)| json!({
                    "candidate": candidate, "sdp_mid": mid, "sdp_m_line_index": index
                })),
        ]
        .boxed(),
        Field::Level => one_of(&["ok", "warning", "critical"]).boxed(),
        Field::Trigger => one_of(&["failed", "disconnected"]).boxed(),
        Field::Outcome => one_of(&["started", "succeeded", "failed"]).boxed(),
        Field::ConnectionKind => one_of(&["direct", "relay"]).boxed(),
        Field::CandidateType => one_of(&["host", "srflx", "prflx", "relay"]).boxed(),
        Field::Protocol => one_of(&["udp", "tcp"]).boxed(),
        Field::RelayProtocol => {
            prop_oneof![Just(Value::Null), one_of(&["udp", "tcp", "tls"])].boxed()
        }
        Field::Peers => prop::collection::vec(peer(), 0..4)
            .prop_map(Value::Array)
            .boxed(),
    }
}

/// One `episode_summary` peer entry.
fn peer() -> impl Strategy<Value = Value> {
    let connection = prop::option::of(
        (
            valid(Field::ConnectionKind),
            valid(Field::CandidateType),
            valid(Field::CandidateType),
            valid(Field::Protocol),
            valid(Field::RelayProtocol),
        )
            .prop_map(|(kind, local, remote, protocol, relay)| {
                json!({
                    "connection_type": kind, "local_candidate_type": local,
                    "remote_candidate_type": remote, "protocol": protocol,
                    "relay_protocol": relay
                })
            }),
    );
    let rtt = prop::option::of((ms(), ms(), ms(), any::<u32>()).prop_map(
        |(min, median, max, samples)| json!({ "min": min, "median": median, "max": max, "samples": samples }),
    ));
    let changes = prop::collection::vec(
        (valid(Field::Level), ms()).prop_map(|(level, at)| json!({ "level": level, "at_ms": at })),
        0..4,
    );
    (
        valid(Field::SmallCount),
        any::<u32>(),
        connection,
        rtt,
        changes,
        0u32..5,
    )
        .prop_map(|(peer, received, connection, rtt, changes, restarts)| {
            json!({
                "peer_index": peer, "inputs_received": received,
                "connection": connection, "rtt_ms": rtt, "quality_changes": changes,
                "ice_restarts": restarts
            })
        })
}

/// A field's value: valid nine times in ten, otherwise any JSON.
fn field(f: Field) -> impl Strategy<Value = Value> {
    prop_oneof![9 => valid(f), 1 => any_json()]
}

/// One client message as a JSON object, its fields each valid or not.
fn message_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::sample::select(MESSAGES).prop_flat_map(|(name, fields)| {
        let values: Vec<_> = fields.iter().map(|&(_, f)| field(f)).collect();
        values.prop_map(move |values| {
            let mut object = Map::new();
            object.insert("type".into(), Value::from(name));
            for ((key, _), value) in fields.iter().zip(values) {
                object.insert((*key).into(), value);
            }
            object
        })
    })
}

/// How to spoil a message object: nothing most of the time, else drop a field, add one, or
/// change the `type`.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Drop(prop::sample::Index),
    Add(String, Value),
    Retype(Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => Just(Mutation::None),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Drop),
        1 => ("[a-z_]{1,20}", any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
        1 => prop_oneof![
            prop::sample::select(MESSAGES).prop_map(|(name, _)| Value::from(name)),
            any_json(),
        ]
        .prop_map(Mutation::Retype),
    ]
}

/// A message object with its mutation applied.
fn structured() -> impl Strategy<Value = Value> {
    (message_object(), mutation()).prop_map(|(mut object, mutation)| {
        match mutation {
            Mutation::None => {}
            Mutation::Drop(i) if !object.is_empty() => {
                let key = object.keys().nth(i.index(object.len())).cloned();
                if let Some(key) = key {
                    object.remove(&key);
                }
            }
            Mutation::Drop(_) => {}
            Mutation::Add(key, value) => {
                object.insert(key, value);
            }
            Mutation::Retype(value) => {
                object.insert("type".into(), value);
            }
        }
        Value::Object(object)
    })
}

/// Cuts `text` at a character boundary and puts `insert` there, followed by the rest of the
/// text when `keep_rest`.
fn splice(text: &str, at: prop::sample::Index, insert: &str, keep_rest: bool) -> String {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let cut = boundaries[at.index(boundaries.len())];
    let rest = if keep_rest { &text[cut..] } else { "" };
    format!("{}{insert}{rest}", &text[..cut])
}

fn check(text: &str) -> Result<(), TestCaseError> {
    properties::check_frame(text).map_err(TestCaseError::fail)
}

proptest! {
    // CI's count; `PROPTEST_CASES` overrides it (proptest reads it over this config).
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Any bytes, as the text a WebSocket would hand over (invalid UTF-8 replaced).
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    /// Any Unicode string.
    #[test]
    fn arbitrary_strings(text in any::<String>()) {
        check(&text)?;
    }

    /// Text that looks like a client message: an object with a `type` and a few fields of
    /// JSON-ish characters.
    #[test]
    fn json_ish_text(
        text in r#"\{"type":"[a-z_]{0,22}"(,"[a-z_]{1,20}":[-0-9a-z"\[\]{}.,:e+ ]{0,24}){0,5}\}"#
    ) {
        check(&text)?;
    }

    /// Client messages whose fields are each valid or any JSON, with fields dropped or added
    /// and the `type` changed.
    #[test]
    fn structured_messages(value in structured()) {
        check(&value.to_string())?;
    }

    /// The same messages as text cut at any character, with a few characters put there and
    /// the rest of the text kept or dropped: mostly broken JSON.
    #[test]
    fn spliced_messages(
        value in structured(),
        at in any::<prop::sample::Index>(),
        insert in r#"[{}\[\]",:0-9a-z\\ ]{0,3}"#,
        keep_rest in any::<bool>(),
    ) {
        check(&splice(&value.to_string(), at, &insert, keep_rest))?;
    }
}

/// The generator's messages are the protocol's: with every field valid (and numbers in
/// range), each template decodes, so `structured_messages` reaches the `Ok` path of every
/// message type.
#[test]
fn every_template_decodes_when_valid() {
    let value = |f: Field| match f {
        Field::Subject => json!("S1"),
        Field::Uuid => json!("6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"),
        Field::OptText => Value::Null,
        Field::Bool => json!(true),
        Field::Count | Field::SmallCount => json!(1),
        Field::OptMs => json!(12.5),
        Field::Samples => json!([12.5, 13.0]),
        Field::SignalType => json!("ice_candidate"),
        Field::Payload => Value::Null,
        Field::Level => json!("warning"),
        Field::Trigger => json!("failed"),
        Field::Outcome => json!("started"),
        Field::ConnectionKind => json!("direct"),
        Field::CandidateType => json!("host"),
        Field::Protocol => json!("udp"),
        Field::RelayProtocol => Value::Null,
        Field::Peers => json!([]),
    };
    for (name, fields) in MESSAGES {
        let mut object = Map::new();
        object.insert("type".into(), json!(name));
        for (key, f) in *fields {
            object.insert((*key).into(), value(*f));
        }
        let text = Value::Object(object).to_string();
        let msg = ClientMessage::decode(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(msg.type_name(), *name);
        properties::check_frame(&text).unwrap();
    }
}

/// The first case the suite found: a 17-digit sample that moves in its last bit on every
/// decode and re-encode (see `properties/decode.rs`); the property takes it as the same.
#[test]
fn a_float_that_drifts_in_its_last_bit_is_the_same_message() {
    let text = r#"{"type":"probe_result","probe_session_id":"aa0a0aaa-0a0a-4aa0-80a0-a000a00a0aaa","success":false,"rtt_ms":null,"samples_ms":[6.051792293875321e-289],"stats_rtt_ms":null}"#;
    properties::check_frame(text).unwrap();
}

/// The libFuzzer target's seed frames (`fuzz/seeds/decode/`) are valid messages, and keep
/// the property.
#[test]
fn fuzz_seeds_decode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/decode");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).expect("the seed folder") {
        let path = entry.expect("a seed").path();
        let text = std::fs::read_to_string(&path).expect("a UTF-8 seed");
        if let Err(e) = ClientMessage::decode(&text) {
            panic!("{}: {e}", path.display());
        }
        properties::check_frame(&text).unwrap();
        seeds += 1;
    }
    assert!(seeds >= 5, "{seeds} seeds");
}
