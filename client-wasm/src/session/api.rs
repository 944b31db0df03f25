//! The class JavaScript sees: [`WasmSession`], wrapped by `www/pairlab.js` (which adds the
//! `on`/`off` surface and the promise of `finish`). Arguments from JavaScript are checked here
//! and refused with an `Error` whose message says what to change.

use std::rc::Rc;

use js_sys::{ArrayBuffer, Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::events::{Field, SessionEvent};
use super::rules::{finish_message, record_event, ApiError};
use super::{Emit, Options, Session};
use crate::game::{GameEvent, GameLogic, Recipient};
use crate::peer::ChannelData;
use crate::signaling::ws_url;
use crate::util::{js_error_text, warn};

fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

fn get(object: &JsValue, key: &str) -> JsValue {
    if object.is_object() {
        Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// A [`Field`] as a JavaScript value.
fn to_js(field: &Field) -> JsValue {
    match field {
        Field::Null => JsValue::NULL,
        Field::Bool(b) => JsValue::from_bool(*b),
        Field::Num(n) => JsValue::from_f64(*n),
        Field::Str(s) => JsValue::from_str(s),
        Field::List(items) => items.iter().map(to_js).collect::<js_sys::Array>().into(),
        Field::Obj(fields) => {
            let object = js_sys::Object::new();
            for (key, value) in fields {
                let _ = Reflect::set(&object, &JsValue::from_str(key), &to_js(value));
            }
            object.into()
        }
        Field::Json(json) => js_sys::JSON::parse(json).unwrap_or(JsValue::NULL),
    }
}

/// An event's detail as a JavaScript object (a `message`'s `data` a string or a
/// `Uint8Array`).
fn detail(ev: &SessionEvent) -> JsValue {
    let detail = to_js(&ev.detail());
    if let SessionEvent::Game(GameEvent::Message { data, .. }) = ev {
        let data: JsValue = match data {
            ChannelData::Text(text) => JsValue::from_str(text),
            ChannelData::Binary(bytes) => Uint8Array::from(bytes.as_slice()).into(),
        };
        let _ = Reflect::set(&detail, &JsValue::from_str("data"), &data);
    }
    detail
}

/// The bytes of an `ArrayBuffer` or of any view of one (`Uint8Array`, `DataView`, …).
fn bytes_of(data: &JsValue) -> Option<Vec<u8>> {
    if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
        return Some(Uint8Array::new(buf).to_vec());
    }
    if !ArrayBuffer::is_view(data) {
        return None;
    }
    let buffer = get(data, "buffer").dyn_into::<ArrayBuffer>().ok()?;
    let offset = get(data, "byteOffset").as_f64()? as u32;
    let length = get(data, "byteLength").as_f64()? as u32;
    Some(Uint8Array::new_with_byte_offset_and_length(&buffer, offset, length).to_vec())
}

/// One participant's session, for `www/pairlab.js`. See [`super`] for what it does and
/// docs/CLIENT_API.md for the JavaScript API built on it.
#[wasm_bindgen]
pub struct WasmSession {
    session: Session,
}

#[wasm_bindgen]
impl WasmSession {
    /// Starts a session. `options`: `{ scene?, subjectId?, wsUrl?, redirect? }` (see `join`;
    /// `wsUrl` is the server's WebSocket, `ws(s)://host/ws`, default the page's own);
    /// `on_event(name, detail)` receives every event.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, on_event: Function) -> WasmSession {
        console_error_panic_hook::set_once();
        let text = |k: &str| {
            get(&options, k)
                .as_string()
                .filter(|s| !s.trim().is_empty())
        };
        // pairlab.js works out the URL from `server` (default: its own origin).
        let ws_url = match text("wsUrl") {
            Some(url) => url,
            None => {
                let location = web_sys::window().map(|w| w.location());
                let part = |f: fn(&web_sys::Location) -> Result<String, JsValue>| {
                    location
                        .as_ref()
                        .and_then(|l| f(l).ok())
                        .unwrap_or_default()
                };
                ws_url(
                    &part(web_sys::Location::protocol),
                    &part(web_sys::Location::host),
                )
            }
        };
        let options = Options {
            scene: text("scene"),
            subject_id: text("subjectId"),
            ws_url,
            redirect: get(&options, "redirect").as_bool().unwrap_or(true),
        };
        let emit: Emit = Rc::new(move |ev: SessionEvent| {
            let name = JsValue::from_str(ev.name());
            if let Err(e) = on_event.call2(&JsValue::NULL, &name, &detail(&ev)) {
                warn(&format!(
                    "the {} event's listener threw: {}",
                    ev.name(),
                    js_error_text(&e)
                ));
            }
        });
        Self {
            session: Session::start(options, emit),
        }
    }

    /// The participant's id.
    #[wasm_bindgen(getter, js_name = subjectId)]
    pub fn subject_id(&self) -> String {
        self.session.subject_id()
    }

    /// Sends `data` (a string, an `ArrayBuffer` or a typed array) to player `to` (a player
    /// index) or to `"all"`, reliably (the ordered `control` channel) or not (`inputs`).
    ///
    /// # Errors
    /// An `Error` for a bad `to` or `data`, before `matched`, or when a connection cannot
    /// send.
    pub fn send(&self, to: JsValue, data: JsValue, reliable: bool) -> Result<(), JsValue> {
        let to = if to.as_string().as_deref() == Some("all") {
            Recipient::All
        } else {
            match to.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => {
                    Recipient::Player(n as u32)
                }
                _ => {
                    let shown = js_sys::JSON::stringify(&to)
                        .map(String::from)
                        .unwrap_or_else(|_| "that".into());
                    return Err(js_error(ApiError::BadRecipient(shown)));
                }
            }
        };
        let data = match data.as_string() {
            Some(text) => ChannelData::Text(text),
            None => {
                ChannelData::Binary(bytes_of(&data).ok_or_else(|| js_error(ApiError::BadData))?)
            }
        };
        self.session.send(to, data, reliable).map_err(js_error)
    }

    /// Sends `record`: the researcher's event `event` with `fields` (a plain object, or
    /// nothing) for the research record.
    ///
    /// # Errors
    /// An `Error` when the name or the fields break the rules, or when not connected.
    pub fn record(&self, event: String, fields: JsValue) -> Result<(), JsValue> {
        let json = if fields.is_undefined() || fields.is_null() {
            None
        } else {
            Some(
                js_sys::JSON::stringify(&fields)
                    .map(String::from)
                    .map_err(|e| js_error(ApiError::FieldsNotObject(js_error_text(&e))))?,
            )
        };
        let msg = record_event(&event, json.as_deref()).map_err(js_error)?;
        self.session
            .send_to_server(&pairlab_shared::ClientMessage::Record(msg), false)
            .map_err(js_error)
    }

    /// Sends `finish` with `outcome`; the server answers with the `outcome` event.
    ///
    /// # Errors
    /// An `Error` for an outcome that may not be claimed, or when not connected.
    pub fn finish(&self, outcome: String) -> Result<(), JsValue> {
        let msg = finish_message(&outcome).map_err(js_error)?;
        self.session
            .send_to_server(&pairlab_shared::ClientMessage::Finish(msg), true)
            .map_err(js_error)
    }

    /// Sends `leave`: the participant quits.
    ///
    /// # Errors
    /// An `Error` when not connected.
    pub fn leave(&self) -> Result<(), JsValue> {
        self.session
            .send_to_server(&pairlab_shared::ClientMessage::Leave, true)
            .map_err(js_error)
    }

    /// Runs the built-in lockstep loop with `logic` (`{ episodeStart?(n), readInput(),
    /// step(frame, inputs), episodeEnd?(n) }`); then calls `done(null, episodes)`, or
    /// `done(error)` when the game ends first (`pairlab.js` makes it a promise).
    ///
    /// # Errors
    /// An `Error` before `matched`, or when `logic` lacks `readInput` or `step`.
    pub fn play(&self, logic: JsValue, done: Function) -> Result<(), JsValue> {
        let logic = JsLogic::new(logic).map_err(js_error)?;
        let run = self.session.play(Box::new(logic)).map_err(js_error)?;
        wasm_bindgen_futures::spawn_local(async move {
            let result = match run.await {
                Ok(episodes) => done.call2(&JsValue::NULL, &JsValue::NULL, &episodes.into()),
                Err(e) => done.call1(&JsValue::NULL, &js_error(format!("pairlab: {e}"))),
            };
            if let Err(e) = result {
                warn(&format!("play's callback threw: {}", js_error_text(&e)));
            }
        });
        Ok(())
    }

    /// Ends the session here without `leave` (closes the game and the connection).
    pub fn close(&self) {
        self.session.close();
    }
}

/// A JavaScript object as a [`GameLogic`]. A method that throws is reported on the console
/// and the loop goes on (a `readInput` that throws or returns no number gives input 0).
struct JsLogic {
    object: JsValue,
    episode_start: Option<Function>,
    read_input: Function,
    step: Function,
    episode_end: Option<Function>,
}

impl JsLogic {
    fn new(object: JsValue) -> Result<Self, ApiError> {
        let method = |name: &str| get(&object, name).dyn_into::<Function>().ok();
        Ok(Self {
            episode_start: method("episodeStart"),
            read_input: method("readInput").ok_or(ApiError::BadLogic("readInput"))?,
            step: method("step").ok_or(ApiError::BadLogic("step"))?,
            episode_end: method("episodeEnd"),
            object,
        })
    }

    fn report(name: &str, result: Result<JsValue, JsValue>) -> Option<JsValue> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                warn(&format!("play: logic.{name} threw: {}", js_error_text(&e)));
                None
            }
        }
    }
}

impl GameLogic for JsLogic {
    fn episode_start(&mut self, episode: u32) {
        if let Some(f) = &self.episode_start {
            Self::report("episodeStart", f.call1(&self.object, &episode.into()));
        }
    }

    fn read_input(&mut self) -> u32 {
        Self::report("readInput", self.read_input.call0(&self.object))
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(0, |v| v.min(f64::from(u32::MAX)) as u32)
    }

    fn step(&mut self, frame: u32, inputs: &[u32]) {
        let inputs: js_sys::Array = inputs.iter().map(|&i| JsValue::from(i)).collect();
        Self::report(
            "step",
            self.step.call2(&self.object, &frame.into(), &inputs),
        );
    }

    fn episode_end(&mut self, episode: u32) {
        if let Some(f) = &self.episode_end {
            Self::report("episodeEnd", f.call1(&self.object, &episode.into()));
        }
    }
}
