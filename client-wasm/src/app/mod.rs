//! The page's entry point: who the participant is, the session with the server, and what the
//! page shows (the DOM contract of `www/index.html`).
//!
//! [`start`] is exported to JavaScript; the page's module script calls it once the wasm
//! module is loaded. It reads the subject id (URL `subject_id`, `PROLIFIC_PID` or `workerId`,
//! else a random one kept in `sessionStorage`) and a signed link's signature (URL `sig`),
//! connects to `/ws`, says `hello` (with the signature, and the latest `resume_token` from
//! `sessionStorage`, so a reload resumes the session), and then
//! follows the server: waitroom, probes (run by a [`ProbeManager`]), game, timeout, errors.
//! An unexpected close is retried [`MAX_RECONNECTS`] times with the resume token (the server
//! keeps the participant's place during its reconnect grace); after `waitroom_timeout`, a
//! closing error, or once the game started, it is not.

pub mod text;
pub mod ui;

use std::cell::Cell;
use std::rc::Rc;

use futures::StreamExt;
use gloo_timers::future::TimeoutFuture;
use pairlab_shared::{
    ClientMessage, GameStart, Hello, ServerMessage, SubjectId, LINK_SIGNATURE_PARAM,
};
use wasm_bindgen::prelude::*;
use web_sys::{HtmlCanvasElement, Storage, Window};

use self::text::{
    describe_error, error_status, is_followable_redirect, lost_text, probing_status,
    random_subject_id, reconnect_delay_ms, resume_token_key, subject_id_from_params,
    waiting_status, PageState, MAX_RECONNECTS, REDIRECT_DELAY_MS, SUBJECT_ID_STORAGE_KEY,
};
use self::ui::Ui;
use crate::game::demo::Dots;
use crate::game::{config_from_params, Game, GameLogic, GameUpdate};
use crate::probe::ProbeManager;
use crate::signaling::{ws_url, Outbox, Signaling, SignalingEvent};
use crate::util::{js_error_text, log, warn};

thread_local! {
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Starts the page (once; later calls do nothing). Called by `www/index.html` after the wasm
/// module is initialised.
///
/// # Errors
/// Never at present; the `Result` lets JavaScript see a future start-up failure as an
/// exception.
#[wasm_bindgen]
pub fn start() -> Result<(), JsValue> {
    console_error_panic_hook::set_once();
    if STARTED.with(|s| s.replace(true)) {
        return Ok(());
    }
    wasm_bindgen_futures::spawn_local(run());
    Ok(())
}

/// Who is connecting, and where the session token lives.
struct Identity {
    subject_id: SubjectId,
    /// The signed link's signature (`sig` in the URL), sent in `hello`.
    link_signature: Option<String>,
    scene_id: Option<String>,
    token_key: String,
}

impl Identity {
    fn from_page(window: &Window, storage: Option<&Storage>) -> Result<Self, String> {
        let search = window.location().search().unwrap_or_default();
        let params = web_sys::UrlSearchParams::new_with_str(&search)
            .map_err(|e| format!("The page address could not be read: {}", js_error_text(&e)))?;
        let scene_id = params.get("scene_id").filter(|s| !s.trim().is_empty());
        let raw = match subject_id_from_params(|k| params.get(k)) {
            Some(id) => id,
            None => {
                let stored = storage
                    .and_then(|s| s.get_item(SUBJECT_ID_STORAGE_KEY).ok().flatten())
                    .filter(|s| SubjectId::parse(s.clone()).is_ok());
                match stored {
                    Some(id) => id,
                    None => {
                        // 48 random bits; not a secret, only unique enough per study.
                        let hi = (js_sys::Math::random() * f64::from(1u32 << 24)) as u64;
                        let lo = (js_sys::Math::random() * f64::from(1u32 << 24)) as u64;
                        let id = random_subject_id((hi << 24) | lo);
                        if let Some(s) = storage {
                            let _ = s.set_item(SUBJECT_ID_STORAGE_KEY, &id);
                        }
                        id
                    }
                }
            }
        };
        let subject_id = SubjectId::parse(raw.clone())
            .map_err(|e| format!("The participant id in this link ({raw:?}) is not valid: {e}."))?;
        let token_key = resume_token_key(scene_id.as_deref(), subject_id.as_str());
        let link_signature = params
            .get(LINK_SIGNATURE_PARAM)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(Self {
            subject_id,
            link_signature,
            scene_id,
            token_key,
        })
    }
}

/// How one connection ended.
enum SessionEnd {
    /// Nothing more to do (timeout, closing error, game running, or the page gave up).
    Final,
    /// The connection went away unexpectedly; `welcomed` says whether it got as far as
    /// `welcome`.
    Lost { detail: String, welcomed: bool },
}

struct App {
    ui: Rc<Ui>,
    identity: Identity,
    storage: Option<Storage>,
    url: String,
    group_size: Cell<u32>,
}

async fn run() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(document) = window.document() else {
        return;
    };
    let ui = Ui::new(&document);
    let storage = window.session_storage().ok().flatten();
    let identity = match Identity::from_page(&window, storage.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            ui.set_state(PageState::Error, "This study link cannot be used.");
            ui.set_error(&e);
            return;
        }
    };
    ui.set_subject_id(identity.subject_id.as_str());
    let location = window.location();
    let url = ws_url(
        &location.protocol().unwrap_or_default(),
        &location.host().unwrap_or_default(),
    );
    let app = App {
        ui: Rc::new(ui),
        identity,
        storage,
        url,
        group_size: Cell::new(2),
    };

    let mut failures = 0;
    let mut ever_welcomed = false;
    loop {
        if failures == 0 {
            app.ui.set_state(PageState::Connecting, "Connecting…");
        } else {
            app.ui
                .set_state(PageState::Connecting, "Reconnecting to the server…");
        }
        match session(&app).await {
            SessionEnd::Final => return,
            SessionEnd::Lost { detail, welcomed } => {
                warn(&format!("connection lost: {detail}"));
                ever_welcomed |= welcomed;
                if welcomed {
                    failures = 0;
                }
                failures += 1;
                if failures > MAX_RECONNECTS {
                    let (status, advice) = lost_text(ever_welcomed);
                    app.ui.set_state(PageState::Closed, status);
                    app.ui.set_error(&format!("{advice} (Details: {detail}.)"));
                    return;
                }
                TimeoutFuture::new(reconnect_delay_ms(failures)).await;
            }
        }
    }
}

/// One WebSocket connection, from `hello` to its end.
async fn session(app: &App) -> SessionEnd {
    let (sig, mut events) = match Signaling::connect(&app.url) {
        Ok(x) => x,
        Err(e) => {
            return SessionEnd::Lost {
                detail: e.to_string(),
                welcomed: false,
            }
        }
    };
    let sig = Rc::new(sig);
    let out: Outbox = {
        let sig = Rc::downgrade(&sig);
        Rc::new(move |msg: ClientMessage| {
            if let Some(sig) = sig.upgrade() {
                if let Err(e) = sig.send(&msg) {
                    warn(&format!("could not send {}: {e}", msg.type_name()));
                }
            }
        })
    };
    let probes = {
        let out = Rc::clone(&out);
        ProbeManager::new(move |msg| out(msg))
    };
    // The running game; dropping it (the session ends) closes its connections.
    let mut game: Option<Game> = None;
    let mut welcomed = false;
    let mut in_game = false;

    while let Some(event) = events.next().await {
        match event {
            SignalingEvent::Open => {
                let resume_token = app
                    .storage
                    .as_ref()
                    .and_then(|s| s.get_item(&app.identity.token_key).ok().flatten());
                let hello = ClientMessage::Hello(Hello {
                    subject_id: app.identity.subject_id.clone(),
                    scene_id: app.identity.scene_id.clone(),
                    resume_token,
                    link_signature: app.identity.link_signature.clone(),
                    recruiter: None,
                    browser: None,
                });
                if let Err(e) = sig.send(&hello) {
                    return SessionEnd::Lost {
                        detail: e.to_string(),
                        welcomed,
                    };
                }
            }
            SignalingEvent::Message(msg) => {
                probes.handle(&msg);
                if let Some(g) = &game {
                    g.handle(&msg);
                }
                match msg {
                    ServerMessage::Welcome(w) => {
                        welcomed = true;
                        app.group_size.set(w.group_size);
                        if let Some(s) = &app.storage {
                            let _ = s.set_item(&app.identity.token_key, &w.resume_token);
                        }
                        if w.hide_lobby_count {
                            app.ui.hide_lobby_count();
                        }
                        app.ui.set_error("");
                        app.ui.set_state(
                            PageState::Connecting,
                            "Connected. Measuring your connection…",
                        );
                    }
                    ServerMessage::Waitroom(w) => {
                        app.group_size.set(w.group_size);
                        app.ui.show_waitroom(&w);
                        app.ui
                            .set_state(PageState::Waitroom, waiting_status(w.group_size));
                    }
                    ServerMessage::ProbePrepare(_) => {
                        app.ui
                            .set_state(PageState::Probing, probing_status(app.group_size.get()));
                    }
                    ServerMessage::GameStart(g) => {
                        in_game = true;
                        app.ui.show_game(&g);
                        app.ui.set_state(PageState::Game, "Your game has started.");
                        if let Some(old) = game.take() {
                            old.close();
                        }
                        game = Some(start_game(app, &g, Rc::clone(&out)));
                    }
                    ServerMessage::WaitroomTimeout(t) => {
                        app.ui.set_message(&t.message);
                        app.ui
                            .set_state(PageState::Timeout, "The waiting time is over.");
                        if let Some(url) = t.redirect_url.filter(|u| is_followable_redirect(u)) {
                            redirect_later(url);
                        }
                        return SessionEnd::Final;
                    }
                    ServerMessage::Error(e) => {
                        app.ui.set_error(&describe_error(&e));
                        if e.code.closes_connection() {
                            app.ui.set_state(PageState::Error, error_status(e.code));
                            return SessionEnd::Final;
                        }
                    }
                    ServerMessage::Ping(_)
                    | ServerMessage::ProbeStart(_)
                    | ServerMessage::ProbeSignal(_)
                    | ServerMessage::WebrtcSignal(_)
                    | ServerMessage::GameEnded(_)
                    | ServerMessage::Outcome(_) => {}
                }
            }
            SignalingEvent::Undecodable { error, frame_start } => {
                warn(&format!("undecodable frame ({error}): {frame_start}"));
                app.ui.set_error(&format!(
                    "The server sent a message this page does not understand ({error})."
                ));
            }
            SignalingEvent::Error => {}
            SignalingEvent::Closed {
                code,
                reason,
                was_clean,
            } => {
                if in_game {
                    log(&format!(
                        "the server closed the connection during the game ({code})"
                    ));
                    return SessionEnd::Final;
                }
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                let clean = if was_clean { "" } else { ", not clean" };
                return SessionEnd::Lost {
                    detail: format!("close code {code}{clean}{reason}"),
                    welcomed,
                };
            }
        }
    }
    SessionEnd::Lost {
        detail: "the connection's events ended".into(),
        welcomed,
    }
}

/// Starts the demo game of `g` (see [`crate::game::demo`]) with the settings of the page's
/// URL parameters ([`config_from_params`]).
fn start_game(app: &App, g: &GameStart, out: Outbox) -> Game {
    let window = web_sys::window();
    let search = window
        .as_ref()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok();
    let config = config_from_params(|k| params.as_ref().and_then(|p| p.get(k)));
    log(&format!("game {}: {config:?}", g.game_id));
    let canvas = window
        .as_ref()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("game-canvas"))
        .and_then(|e| e.dyn_into::<HtmlCanvasElement>().ok());
    let me = g.player_index as usize;
    let logic: Box<dyn GameLogic> = match window {
        Some(w) => Box::new(Dots::new(w, canvas, me, g.player_count as usize)),
        None => Box::new(NoInput),
    };
    let ui = Rc::clone(&app.ui);
    Game::start(
        g,
        config,
        out,
        logic,
        Rc::new(move |u: GameUpdate| ui.show_game_update(&u)),
    )
}

/// A game without a window: no input, nothing drawn.
struct NoInput;

impl GameLogic for NoInput {
    fn episode_start(&mut self, _episode: u32) {}
    fn read_input(&mut self) -> u32 {
        0
    }
    fn step(&mut self, _frame: u32, _inputs: &[u32]) {}
}

/// Follows `url` after [`REDIRECT_DELAY_MS`], so the timeout message is seen first.
fn redirect_later(url: String) {
    wasm_bindgen_futures::spawn_local(async move {
        TimeoutFuture::new(REDIRECT_DELAY_MS).await;
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
