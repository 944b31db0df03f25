//! Browser tests of the class `www/pairlab.js` wraps, `WasmSession`: its argument checks
//! (the `Error`s a researcher sees) and its events when the server cannot be reached.
//!
//! Run from the workspace root: `wasm-pack test --headless --chrome --mode no-install
//! client-wasm --test session`. No server is needed: the session is pointed at a closed port.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, Object, Reflect, JSON};
use pairlab_client::WasmSession;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::within;

type Seen = Rc<RefCell<Vec<(String, JsValue)>>>;
/// The event listener; kept alive by the test.
type Listener = Closure<dyn FnMut(String, JsValue)>;

/// A session for `subject_id` whose WebSocket goes nowhere (port 9, discard: refused), and
/// the events it reported.
fn session(subject_id: &str) -> (WasmSession, Seen, Listener) {
    let options = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&options, &k.into(), &v).expect("set");
    set("subjectId", subject_id.into());
    set("wsUrl", "ws://127.0.0.1:9/ws".into());
    set("redirect", false.into());
    let seen: Seen = Rc::default();
    let on_event = {
        let seen = Rc::clone(&seen);
        Listener::new(move |name, detail| {
            seen.borrow_mut().push((name, detail));
        })
    };
    let s = WasmSession::new(
        options.into(),
        on_event
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone(),
    );
    (s, seen, on_event)
}

fn message_of(err: JsValue) -> String {
    err.dyn_into::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|v| format!("not an Error: {v:?}"))
}

fn field(detail: &JsValue, key: &str) -> JsValue {
    Reflect::get(detail, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen_test]
async fn calls_are_checked_with_errors_that_say_what_to_change() {
    let (s, seen, _keep) = session("t-checks");
    assert_eq!(s.subject_id(), "t-checks");
    assert!(
        seen.borrow().is_empty(),
        "no event before the caller could add listeners"
    );
    let err = |r: Result<(), JsValue>| message_of(r.expect_err("an Error"));
    assert!(err(s.send(0.into(), "x".into(), true)).contains("no game yet"));
    assert!(err(s.send("everyone".into(), "x".into(), true)).contains("player index"));
    assert!(err(s.send(1.5.into(), "x".into(), true)).contains("player index"));
    assert!(err(s.send(0.into(), 42.into(), true)).contains("string, an ArrayBuffer"));
    assert!(err(s.record("Trial End".into(), Object::new().into())).contains("not valid"));
    assert!(err(s.record("trial".into(), Array::of1(&1.into()).into())).contains("plain object"));
    let big = JSON::parse(&format!(r#"{{"s":"{}"}}"#, "x".repeat(9000))).expect("json");
    assert!(err(s.record("trial".into(), big)).contains("8192"));
    assert!(err(s.record("trial".into(), JsValue::UNDEFINED)).contains("not connected"));
    assert!(err(s.finish("left".into())).contains("decided by the server"));
    assert!(err(s.finish("Done!".into())).contains("not valid"));
    assert!(err(s.leave()).contains("not connected"));
    let done = js_sys::Function::new_no_args("");
    assert!(message_of(
        s.play(Object::new().into(), done.clone())
            .expect_err("no logic")
    )
    .contains("readInput"));
    s.close();
}

#[wasm_bindgen_test]
async fn an_unreachable_server_is_retried_then_reported_lost() {
    let (s, seen, _keep) = session("t-lost");
    within(10_000, "the closed event", async {
        while !seen.borrow().iter().any(|(n, _)| n == "closed") {
            TimeoutFuture::new(50).await;
        }
    })
    .await;
    let seen = seen.borrow();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["connecting", "connecting", "connecting", "closed"],
        "the first try and two retries"
    );
    let attempts: Vec<f64> = seen[..3]
        .iter()
        .map(|(_, d)| field(d, "attempt").as_f64().expect("attempt"))
        .collect();
    assert_eq!(attempts, [0.0, 1.0, 2.0]);
    let closed = &seen[3].1;
    assert_eq!(field(closed, "lost").as_bool(), Some(true));
    assert_eq!(field(closed, "welcomed").as_bool(), Some(false));
    assert!(field(closed, "detail").as_string().is_some());
    s.close();
}
