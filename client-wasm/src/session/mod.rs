//! A participant's session: the public API's engine. [`api::WasmSession`] is what
//! `www/pairlab.js` wraps; [`Session`] is the session itself.
//!
//! [`Session::start`] works out who the participant is ([`identity`]), checks the browser
//! (`hello.browser`), watches the page's visibility from then on (`attention`, and the hidden
//! time of each episode), and runs the connection in a task:
//! connect to the server's `/ws`, say `hello` (subject id, scene, the signed link's `sig`,
//! the latest `resume_token` from `sessionStorage` so that a reload resumes the session, the
//! recruiter's URL parameters and the browser check), then follow the server: waitroom,
//! probes (run by a [`ProbeManager`]), `game_start` (a [`Game`] with the scene's settings,
//! on the probe connections the server handed over: [`ProbeManager::hand_over`]),
//! `game_ended`, `waitroom_timeout`, `outcome` and every error, each reported to JavaScript as
//! a [`SessionEvent`]. An unexpected close before the game is retried
//! [`rules::MAX_RECONNECTS`] times with the resume token (the server keeps the participant's
//! place during its reconnect grace); after a timeout, an outcome, a closing error, `leave`,
//! `finish`, or once the game started, it is not. After an `outcome` or a `waitroom_timeout`
//! with a redirect URL the page goes there (unless `join({ redirect: false })`).
//!
//! The first event is reported from a later browser task than the one that called
//! [`Session::start`], so listeners added right after `join` resolves miss nothing.

pub mod api;
pub mod events;
pub mod identity;
pub mod rules;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::{future, StreamExt};
use gloo_events::EventListener;
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{BrowserCheck, ClientMessage, Hello, ServerMessage};
use wasm_bindgen::JsValue;
use web_sys::Storage;

use self::events::SessionEvent;
use self::identity::Identity;
use self::rules::{is_followable_redirect, reconnect_delay_ms, ApiError, MAX_RECONNECTS};
use crate::game::logic::HiddenLog;
use crate::game::{Game, GameConfig, GameEvent, GameLogic, PlayError};
use crate::handover::GamePaths;
use crate::probe::ProbeManager;
use crate::signaling::{Outbox, Signaling, SignalingEvent};
use crate::util::{js_error_text, log, now_ms, warn};

/// What `join` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The scene to join; `None`: the URL's `scene_id`, else the server's first scene.
    pub scene: Option<String>,
    /// The participant's id; `None`: from the page (see [`Identity::from_page`]).
    pub subject_id: Option<String>,
    /// The WebSocket URL (`ws(s)://host/ws`).
    pub ws_url: String,
    /// Whether to follow an `outcome`'s (or a timeout's) redirect URL.
    pub redirect: bool,
}

/// Reports [`SessionEvent`]s (to JavaScript).
pub type Emit = Rc<dyn Fn(SessionEvent)>;

/// How one connection ended.
enum ConnectionEnd {
    /// Nothing more to do (timeout, outcome, closing error, game running, leave, finish).
    Final(String),
    /// The connection went away unexpectedly; `welcomed` says whether it got as far as
    /// `welcome`.
    Lost { detail: String, welcomed: bool },
}

struct Shared {
    emit: Emit,
    options: Options,
    identity: Result<Identity, String>,
    storage: Option<Storage>,
    browser: BrowserCheck,
    socket: RefCell<Option<Rc<Signaling>>>,
    game: RefCell<Option<Game>>,
    game_config: Cell<Option<GameConfig>>,
    hidden: Rc<RefCell<HiddenLog>>,
    /// `leave` or `finish` was sent: a close is the expected end.
    ending: Cell<bool>,
    redirecting: Cell<bool>,
    /// Stops the connection task; `None` once closed.
    cancel: RefCell<Option<oneshot::Sender<()>>>,
    /// `visibilitychange`, `blur`, `focus`; removed on close.
    attention: RefCell<Vec<EventListener>>,
}

impl Shared {
    fn emit(&self, ev: SessionEvent) {
        (self.emit)(ev);
    }

    /// Sends `msg` on the current connection.
    fn send(&self, msg: &ClientMessage) -> Result<(), ApiError> {
        let socket = self.socket.borrow();
        let socket = socket
            .as_ref()
            .ok_or_else(|| ApiError::NotConnected("no connection".into()))?;
        socket
            .send(msg)
            .map_err(|e| ApiError::NotConnected(e.to_string()))
    }

    /// Sends through whatever connection is current (probes and the game send this way).
    fn outbox(self: &Rc<Self>) -> Outbox {
        let weak = Rc::downgrade(self);
        Rc::new(move |msg: ClientMessage| {
            if let Some(shared) = weak.upgrade() {
                if let Err(e) = shared.send(&msg) {
                    warn(&format!("could not send {}: {e}", msg.type_name()));
                }
            }
        })
    }

    /// The page is hidden (or not): `attention` to the server and the event, on a change.
    fn set_hidden(&self, hidden: bool) {
        let change = self.hidden.borrow_mut().set(hidden, now_ms());
        if let Some(attention) = change {
            if self.send(&ClientMessage::Attention(attention)).is_err() {
                log("attention not sent: not connected");
            }
            self.emit(SessionEvent::Attention {
                hidden: attention.hidden,
                hidden_ms: attention.hidden_ms,
            });
        }
    }

    /// Follows `url` after [`rules::REDIRECT_DELAY_MS`] (once, and only when allowed).
    fn redirect_later(&self, url: Option<&str>) {
        let Some(url) = url.filter(|u| is_followable_redirect(u)) else {
            return;
        };
        if !self.options.redirect || self.redirecting.replace(true) {
            return;
        }
        let url = url.to_owned();
        wasm_bindgen_futures::spawn_local(async move {
            TimeoutFuture::new(rules::REDIRECT_DELAY_MS).await;
            if let Some(w) = web_sys::window() {
                if let Err(e) = w.location().assign(&url) {
                    warn(&format!(
                        "could not follow the redirect: {}",
                        js_error_text(&e)
                    ));
                }
            }
        });
    }

    fn close_game(&self) {
        let game = self.game.borrow_mut().take();
        if let Some(game) = game {
            game.close();
        }
    }
}

/// A running session. See the module docs. Dropping it does not stop it; [`Session::close`]
/// does.
pub struct Session {
    shared: Rc<Shared>,
}

impl Session {
    /// Starts a session with `options`, reporting to `emit`.
    pub fn start(options: Options, emit: Emit) -> Self {
        let storage = web_sys::window().and_then(|w| w.session_storage().ok().flatten());
        let identity = Identity::from_page(
            options.subject_id.clone(),
            options.scene.clone(),
            storage.as_ref(),
        );
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let shared = Rc::new(Shared {
            emit,
            options,
            identity,
            storage,
            browser: browser_check(),
            socket: RefCell::new(None),
            game: RefCell::new(None),
            game_config: Cell::new(None),
            hidden: Rc::new(RefCell::new(HiddenLog::default())),
            ending: Cell::new(false),
            redirecting: Cell::new(false),
            cancel: RefCell::new(Some(cancel_tx)),
            attention: RefCell::new(Vec::new()),
        });
        watch_attention(&shared);
        let task = Rc::clone(&shared);
        wasm_bindgen_futures::spawn_local(async move {
            let _ = future::select(cancel_rx, Box::pin(run(task))).await;
        });
        Self { shared }
    }

    /// The participant's id (empty when the page's id is not valid: an `error` follows).
    pub fn subject_id(&self) -> String {
        self.shared
            .identity
            .as_ref()
            .map(|i| i.subject_id.as_str().to_owned())
            .unwrap_or_default()
    }

    /// Sends a researcher's message to the game's members (see [`Game::send`]).
    ///
    /// # Errors
    /// [`ApiError::NoGame`] before `matched`; the game's own refusal as text.
    pub fn send(
        &self,
        to: crate::game::Recipient,
        data: crate::peer::ChannelData,
        reliable: bool,
    ) -> Result<(), String> {
        let game = self.shared.game.borrow();
        let game = game.as_ref().ok_or_else(|| ApiError::NoGame.to_string())?;
        game.send(to, data, reliable)
            .map_err(|e| format!("pairlab: {e}"))
    }

    /// Sends `msg` (`record`, `finish`, `leave`) to the server; `ending` marks a message after
    /// which the server closes the connection.
    ///
    /// # Errors
    /// [`ApiError::NotConnected`].
    pub fn send_to_server(&self, msg: &ClientMessage, ending: bool) -> Result<(), ApiError> {
        self.shared.send(msg)?;
        if ending {
            self.shared.ending.set(true);
        }
        Ok(())
    }

    /// Runs the game loop with `logic` (see [`Game::play`]).
    ///
    /// # Errors
    /// [`ApiError::NoGame`] before `matched`.
    pub fn play(
        &self,
        logic: Box<dyn GameLogic>,
    ) -> Result<impl Future<Output = Result<u32, PlayError>>, ApiError> {
        let game = self.shared.game.borrow();
        let game = game.as_ref().ok_or(ApiError::NoGame)?;
        let config = self.shared.game_config.get().ok_or(ApiError::NoGame)?;
        Ok(game.play(config, logic))
    }

    /// Ends the session here: closes the game's connections and the WebSocket (without
    /// `leave`: the server keeps the place for its reconnect grace) and stops watching the
    /// page. Idempotent.
    pub fn close(&self) {
        self.shared.cancel.borrow_mut().take();
        self.shared.close_game();
        self.shared.socket.borrow_mut().take();
        self.shared.attention.borrow_mut().clear();
    }
}

/// What `hello.browser` says: `RTCPeerConnection` constructible, `createDataChannel` there.
fn browser_check() -> BrowserCheck {
    let webrtc = match web_sys::RtcPeerConnection::new() {
        Ok(pc) => {
            pc.close();
            true
        }
        Err(_) => false,
    };
    let data_channel = web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &JsValue::from_str("RTCPeerConnection")).ok())
        .and_then(|ctor| js_sys::Reflect::get(&ctor, &JsValue::from_str("prototype")).ok())
        .and_then(|proto| {
            js_sys::Reflect::get(&proto, &JsValue::from_str("createDataChannel")).ok()
        })
        .is_some_and(|f| f.is_function());
    BrowserCheck {
        webrtc,
        data_channel,
    }
}

/// Whether the page is hidden now: `document.hidden`, or `focused` is false.
fn page_hidden(focused: bool) -> bool {
    !focused
        || web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.hidden())
}

/// Watches `visibilitychange` and the window's `blur`/`focus` (focus is assumed at the
/// start: a page opened in the background is `hidden` anyway).
fn watch_attention(shared: &Rc<Shared>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let focused = Rc::new(Cell::new(true));
    let listener = |target: &web_sys::EventTarget, name: &'static str, focus: Option<bool>| {
        let (weak, focused) = (Rc::downgrade(shared), Rc::clone(&focused));
        EventListener::new(target, name, move |_| {
            if let Some(f) = focus {
                focused.set(f);
            }
            if let Some(shared) = weak.upgrade() {
                shared.set_hidden(page_hidden(focused.get()));
            }
        })
    };
    let mut listeners = vec![
        listener(&window, "blur", Some(false)),
        listener(&window, "focus", Some(true)),
    ];
    if let Some(doc) = window.document() {
        listeners.push(listener(&doc, "visibilitychange", None));
    }
    *shared.attention.borrow_mut() = listeners;
    shared.hidden.borrow_mut().set(page_hidden(true), now_ms());
}

async fn run(shared: Rc<Shared>) {
    // Let the caller of `join` add its listeners first.
    TimeoutFuture::new(0).await;
    let identity = match &shared.identity {
        Ok(i) => i.clone(),
        Err(e) => {
            shared.emit(SessionEvent::Error {
                code: "invalid_link_id".into(),
                message: e.clone(),
                fatal: true,
            });
            shared.emit(SessionEvent::Closed {
                lost: false,
                welcomed: false,
                detail: e.clone(),
            });
            return;
        }
    };
    let mut failures = 0;
    let mut ever_welcomed = false;
    loop {
        shared.emit(SessionEvent::Connecting { attempt: failures });
        let end = connection(&shared, &identity).await;
        shared.socket.borrow_mut().take();
        match end {
            ConnectionEnd::Final(detail) => {
                shared.emit(SessionEvent::Closed {
                    lost: false,
                    welcomed: ever_welcomed,
                    detail,
                });
                return;
            }
            ConnectionEnd::Lost { detail, welcomed } => {
                warn(&format!("connection lost: {detail}"));
                ever_welcomed |= welcomed;
                if welcomed {
                    failures = 0;
                }
                failures += 1;
                if failures > MAX_RECONNECTS {
                    shared.emit(SessionEvent::Closed {
                        lost: true,
                        welcomed: ever_welcomed,
                        detail,
                    });
                    return;
                }
                TimeoutFuture::new(reconnect_delay_ms(failures)).await;
            }
        }
    }
}

/// One WebSocket connection, from `hello` to its end.
async fn connection(shared: &Rc<Shared>, identity: &Identity) -> ConnectionEnd {
    let (sig, mut events) = match Signaling::connect(&shared.options.ws_url) {
        Ok(x) => x,
        Err(e) => {
            return ConnectionEnd::Lost {
                detail: e.to_string(),
                welcomed: false,
            }
        }
    };
    *shared.socket.borrow_mut() = Some(Rc::new(sig));
    let probes = {
        let out = shared.outbox();
        ProbeManager::new(move |msg| out(msg))
    };
    let mut welcomed = false;
    let mut in_game = false;
    // An outcome or a timeout came: the server closes next.
    let mut done = false;

    while let Some(event) = events.next().await {
        match event {
            SignalingEvent::Open => {
                let resume_token = shared
                    .storage
                    .as_ref()
                    .and_then(|s| s.get_item(&identity.token_key).ok().flatten());
                let hello = ClientMessage::Hello(Hello {
                    subject_id: identity.subject_id.clone(),
                    scene_id: identity.scene_id.clone(),
                    resume_token,
                    link_signature: identity.link_signature.clone(),
                    recruiter: identity.recruiter.clone().map(Box::new),
                    browser: Some(shared.browser),
                });
                if let Err(e) = shared.send(&hello) {
                    return ConnectionEnd::Lost {
                        detail: e.to_string(),
                        welcomed,
                    };
                }
            }
            SignalingEvent::Message(msg) => {
                // What `game_start` adopts is taken before the probes close.
                let paths = match &msg {
                    ServerMessage::GameStart(g) => probes.hand_over(g),
                    _ => GamePaths::new(),
                };
                probes.handle(&msg);
                if let Some(g) = shared.game.borrow().as_ref() {
                    g.handle(&msg);
                }
                match msg {
                    ServerMessage::Welcome(w) => {
                        welcomed = true;
                        if let Some(s) = &shared.storage {
                            let _ = s.set_item(&identity.token_key, &w.resume_token);
                        }
                        if shared.hidden.borrow().is_hidden() {
                            let _ =
                                shared.send(&ClientMessage::Attention(pairlab_shared::Attention {
                                    hidden: true,
                                    hidden_ms: None,
                                }));
                        }
                        shared.emit(SessionEvent::Welcome(w));
                    }
                    ServerMessage::Waitroom(w) => shared.emit(SessionEvent::Waitroom(w)),
                    ServerMessage::ProbePrepare(p) => shared.emit(SessionEvent::Probing {
                        peer_index: p.peer_index,
                    }),
                    ServerMessage::GameStart(g) => {
                        in_game = true;
                        start_game(shared, &g, paths);
                    }
                    ServerMessage::GameEnded(e) => {
                        // Out of its slot while it reports its last phase, so that a listener
                        // may call anything (even `close`).
                        let game = shared.game.borrow_mut().take();
                        if let Some(g) = &game {
                            g.end();
                        }
                        if shared.game.borrow().is_none() {
                            *shared.game.borrow_mut() = game;
                        }
                        shared.emit(SessionEvent::Ended(e));
                    }
                    ServerMessage::WaitroomTimeout(t) => {
                        done = true;
                        shared.redirect_later(t.redirect_url.as_deref());
                        shared.emit(SessionEvent::Timeout(t));
                    }
                    ServerMessage::Outcome(o) => {
                        done = true;
                        shared.close_game();
                        shared.redirect_later(o.redirect_url.as_deref());
                        shared.emit(SessionEvent::Outcome(o));
                    }
                    ServerMessage::Error(e) => {
                        let fatal = e.code.closes_connection();
                        shared.emit(SessionEvent::Error {
                            code: e.code.as_str().into(),
                            message: e.message,
                            fatal,
                        });
                        if fatal {
                            return ConnectionEnd::Final(format!("error {}", e.code));
                        }
                    }
                    ServerMessage::Ping(_)
                    | ServerMessage::ProbeStart(_)
                    | ServerMessage::ProbeSignal(_)
                    | ServerMessage::ProbeClose(_)
                    | ServerMessage::WebrtcSignal(_) => {}
                }
            }
            SignalingEvent::Undecodable { error, frame_start } => {
                warn(&format!("undecodable frame ({error}): {frame_start}"));
                shared.emit(SessionEvent::Error {
                    code: "undecodable".into(),
                    message: format!(
                        "The server sent a message this page does not understand ({error})."
                    ),
                    fatal: false,
                });
            }
            SignalingEvent::Error => {}
            SignalingEvent::Closed {
                code,
                reason,
                was_clean,
            } => {
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                let clean = if was_clean { "" } else { ", not clean" };
                let detail = format!("close code {code}{clean}{reason}");
                if in_game || done || shared.ending.get() {
                    log(&format!("the server closed the connection ({detail})"));
                    return ConnectionEnd::Final(detail);
                }
                return ConnectionEnd::Lost { detail, welcomed };
            }
        }
    }
    ConnectionEnd::Lost {
        detail: "the connection's events ended".into(),
        welcomed,
    }
}

/// `game_start`: the game's connections with the scene's settings (adopting the handed-over
/// probe connections in `paths`), then `matched`.
fn start_game(shared: &Rc<Shared>, g: &pairlab_shared::GameStart, paths: GamePaths) {
    let params = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok());
    let config = GameConfig::from_settings(&g.game, |k| params.as_ref().and_then(|p| p.get(k)));
    let events = {
        let weak = Rc::downgrade(shared);
        Rc::new(move |ev: GameEvent| {
            if let Some(shared) = weak.upgrade() {
                shared.emit(SessionEvent::Game(ev));
            }
        })
    };
    let game = Game::start(
        g,
        config.tuning,
        paths,
        shared.outbox(),
        events,
        Rc::clone(&shared.hidden),
    );
    shared.close_game();
    *shared.game.borrow_mut() = Some(game);
    shared.game_config.set(Some(config));
    shared.emit(SessionEvent::Matched {
        start: g.clone(),
        config,
    });
    shared.emit(SessionEvent::Game(GameEvent::Phase(
        crate::game::GamePhase::Connecting,
    )));
}
