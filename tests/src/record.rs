//! Reading the research record (`<data-dir>/<scene_id>/events.jsonl`, one JSON object per line)
//! the way the tests and the benchmarks do: [`read_events`] once, [`wait_for_events`] until a
//! condition holds, and the filters that pick lines by their kind and subject.
//!
//! A line's kind is its `event` field read as the server's [`ResearchEventKind`] ([`kind_of`]):
//! the event names have one home, the server's record types, and a renamed event fails to
//! compile here instead of silently matching nothing. The other fields stay JSON
//! ([`serde_json::Value`]): the tests check what the record holds, including its shape.
//! [`kind_of`], [`events_of`], [`position_of`] and [`event_names`] are the server's own readers
//! (`pairlab_server::record`, next to the writer), re-exported here; the filters by subject
//! ([`events_by`], [`has_event_for`]) are the harness's.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub use pairlab_server::core::research::ResearchEventKind;
pub use pairlab_server::record::{event_names, events_of, kind_of, position_of};

use crate::error::io;
use crate::process::Wait;
use crate::{HarnessError, Result};

/// Reads a research record: one JSON object per line. A last line without its newline is a
/// write in progress and is skipped. A missing file is an empty record.
///
/// # Errors
/// [`HarnessError::Io`] when the file exists but cannot be read, [`HarnessError::Record`] for a
/// complete line that is not a JSON object.
pub fn read_events(path: &Path) -> Result<Vec<Value>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("read {}", path.display()))(e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut events = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| HarnessError::Record {
            path: path.display().to_string(),
            line: i + 1,
            detail: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(HarnessError::Record {
                path: path.display().to_string(),
                line: i + 1,
                detail: format!("a {} instead", json_kind(&value)),
            });
        }
        events.push(value);
    }
    Ok(events)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Polls a research record every [`crate::POLL`] until `done` holds for its events, for at
/// most `timeout`, and returns them.
///
/// # Errors
/// [`HarnessError::Timeout`] with the event names seen, or the errors of [`read_events`].
pub async fn wait_for_events(
    path: &Path,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>> {
    let wait = Wait::new(format!("{what} in {}", path.display()), timeout);
    loop {
        let events = read_events(path)?;
        if done(&events) {
            return Ok(events);
        }
        wait.tick(format!("events: [{}]", event_names(&events).join(", ")))
            .await?;
    }
}

/// The `subject_id` of a record line, if it has one.
pub fn subject_of(line: &Value) -> Option<&str> {
    line.get("subject_id").and_then(Value::as_str)
}

/// The record lines of `kind` whose `subject_id` is `subject`.
pub fn events_by<'a>(
    events: &'a [Value],
    kind: ResearchEventKind,
    subject: &str,
) -> Vec<&'a Value> {
    events_of(events, kind)
        .into_iter()
        .filter(|e| subject_of(e) == Some(subject))
        .collect()
}

/// Whether some line of `kind` has `subject_id` equal to `subject`.
pub fn has_event_for(events: &[Value], kind: ResearchEventKind, subject: &str) -> bool {
    !events_by(events, kind, subject).is_empty()
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time as the record writes its `ts`
/// (`2026-11-22T01:16:43.123Z`); `None` for any other shape.
pub fn rfc3339_ms(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60) as f64 + sec) * 1000.0)
}

/// The record line's `ts` as [`rfc3339_ms`].
pub fn ts_ms(line: &Value) -> Option<f64> {
    line.get("ts").and_then(Value::as_str).and_then(rfc3339_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ResearchEventKind as Ev;

    #[test]
    fn read_events_skips_a_partial_last_line_and_rejects_non_objects() {
        let dir = std::env::temp_dir().join(format!("pairlab-tests-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("events.jsonl");
        fs::write(
            &path,
            "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"c\"",
        )
        .expect("write");
        let events = read_events(&path).expect("read");
        assert_eq!(event_names(&events), vec!["a", "b"]);
        fs::write(&path, "{\"event\":\"a\"}\n[1]\n").expect("write");
        match read_events(&path) {
            Err(HarnessError::Record { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a record error on line 2, got {other:?}"),
        }
        assert!(read_events(&dir.join("missing.jsonl"))
            .expect("missing is empty")
            .is_empty());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn has_event_for_matches_event_and_subject() {
        let events = vec![
            json!({"event": "waitroom_timeout", "subject_id": "A"}),
            json!({"event": "participant_joined", "subject_id": "B"}),
            json!({"event": "not_an_event", "subject_id": "A"}),
        ];
        assert!(has_event_for(&events, Ev::WaitroomTimeout, "A"));
        assert!(!has_event_for(&events, Ev::WaitroomTimeout, "B"));
        assert_eq!(events_of(&events, Ev::ParticipantJoined).len(), 1);
        assert_eq!(kind_of(&events[2]), None);
        assert_eq!(position_of(&events, Ev::ParticipantJoined), Some(1));
        assert_eq!(position_of(&events, Ev::GameCreated), None);
    }

    #[test]
    fn rfc3339_parses_the_record_format() {
        // `date -d 2026-11-22T01:16:43.123Z +%s%3N` prints 1795310203123.
        assert_eq!(
            rfc3339_ms("2026-11-22T01:16:43.123Z"),
            Some(1_795_310_203_123.0)
        );
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(rfc3339_ms("2026-11-22 01:16:43Z"), None);
        assert_eq!(
            ts_ms(&json!({"ts": "1970-01-01T00:00:01.000Z"})),
            Some(1000.0)
        );
    }
}
