//! Writing the page: the elements of the DOM contract (`www/index.html`), found by id. A
//! missing element is skipped, never a panic.

use std::cell::RefCell;

use gloo_timers::callback::Interval;
use pairlab_shared::{ConnectionKind, GameStart, QualityLevel, Waitroom};
use web_sys::{Document, Element};

use super::text::{format_countdown, PageState};
use crate::game::{GamePhase, GameUpdate};
use crate::util::now_ms;

/// How often the countdown is redrawn, ms.
const COUNTDOWN_TICK_MS: u32 = 250;

/// The page's elements, and the countdown timer it owns.
pub struct Ui {
    body: Option<Element>,
    status: Option<Element>,
    lobby: Option<Element>,
    waiting_count: Option<Element>,
    countdown: Option<Element>,
    game_id: Option<Element>,
    player_index: Option<Element>,
    player_count: Option<Element>,
    message: Option<Element>,
    error: Option<Element>,
    subject_id: Option<Element>,
    connection_type: Option<Element>,
    quality: Option<Element>,
    quality_warning: Option<Element>,
    episode: Option<Element>,
    frames: Option<Element>,
    /// Redraws `#countdown`; dropping it stops the browser interval.
    countdown_timer: RefCell<Option<Interval>>,
}

fn set_text(el: &Option<Element>, text: &str) {
    if let Some(el) = el {
        el.set_text_content(Some(text));
    }
}

fn set_hidden(el: &Option<Element>, hidden: bool) {
    if let Some(el) = el {
        let _ = if hidden {
            el.set_attribute("hidden", "")
        } else {
            el.remove_attribute("hidden")
        };
    }
}

impl Ui {
    /// Finds the elements in `doc`.
    pub fn new(doc: &Document) -> Self {
        let by_id = |id: &str| doc.get_element_by_id(id);
        Self {
            body: doc.body().map(Element::from),
            status: by_id("status"),
            lobby: by_id("lobby"),
            waiting_count: by_id("waiting-count"),
            countdown: by_id("countdown"),
            game_id: by_id("game-id"),
            player_index: by_id("player-index"),
            player_count: by_id("player-count"),
            message: by_id("message"),
            error: by_id("error"),
            subject_id: by_id("subject-id"),
            connection_type: by_id("connection-type"),
            quality: by_id("quality"),
            quality_warning: by_id("quality-warning"),
            episode: by_id("episode"),
            frames: by_id("frames"),
            countdown_timer: RefCell::new(None),
        }
    }

    /// Sets `<body data-state>` and the status sentence.
    pub fn set_state(&self, state: PageState, status: &str) {
        if let Some(body) = &self.body {
            let _ = body.set_attribute("data-state", state.as_str());
        }
        set_text(&self.status, status);
        if matches!(
            state,
            PageState::Game | PageState::Timeout | PageState::Error | PageState::Closed
        ) {
            self.stop_countdown();
        }
        if state == PageState::Timeout {
            set_text(&self.countdown, &format_countdown(0.0));
        }
    }

    /// The participant's id, in small print.
    pub fn set_subject_id(&self, id: &str) {
        set_text(&self.subject_id, id);
    }

    /// Shows a `waitroom` message: the lobby count (hidden when `waiting` is null) and a
    /// countdown from `remaining_ms`, run locally.
    pub fn show_waitroom(&self, w: &Waitroom) {
        match w.waiting {
            Some(n) => {
                set_text(&self.waiting_count, &n.to_string());
                set_hidden(&self.lobby, false);
                set_hidden(&self.waiting_count, false);
            }
            None => {
                set_text(&self.waiting_count, "");
                set_hidden(&self.lobby, true);
                set_hidden(&self.waiting_count, true);
            }
        }
        self.start_countdown(w.remaining_ms as f64);
    }

    /// Hides the lobby count (the scene says so in `welcome`).
    pub fn hide_lobby_count(&self) {
        set_text(&self.waiting_count, "");
        set_hidden(&self.lobby, true);
        set_hidden(&self.waiting_count, true);
    }

    fn start_countdown(&self, remaining_ms: f64) {
        let deadline = now_ms() + remaining_ms;
        set_text(&self.countdown, &format_countdown(remaining_ms));
        let el = self.countdown.clone();
        let timer = Interval::new(COUNTDOWN_TICK_MS, move || {
            set_text(&el, &format_countdown(deadline - now_ms()));
        });
        // Replacing the old interval drops it, which clears it in the browser.
        *self.countdown_timer.borrow_mut() = Some(timer);
    }

    fn stop_countdown(&self) {
        self.countdown_timer.borrow_mut().take();
    }

    /// Shows `game_start`: the game id and the player number (1-based text, 0-based
    /// `data-player-index`).
    pub fn show_game(&self, g: &GameStart) {
        set_text(&self.game_id, g.game_id.as_str());
        set_text(
            &self.player_index,
            &(u64::from(g.player_index) + 1).to_string(),
        );
        if let Some(el) = &self.player_index {
            let _ = el.set_attribute("data-player-index", &g.player_index.to_string());
        }
        set_text(&self.player_count, &g.player_count.to_string());
    }

    /// Shows one [`GameUpdate`]: `body[data-game-phase]`, `#connection-type`, `#quality`
    /// (and the participant's warning while it is not `ok`), `#episode`, `#frames`, and the
    /// `game_ended` message in `#message`.
    pub fn show_game_update(&self, update: &GameUpdate) {
        match update {
            GameUpdate::Phase(phase) => {
                if let Some(body) = &self.body {
                    let _ = body.set_attribute("data-game-phase", phase.as_str());
                }
                let status = match phase {
                    GamePhase::Connecting => "Connecting to your partner…",
                    GamePhase::Playing => "Your game is running.",
                    GamePhase::Restarting => "Reconnecting to your partner…",
                    GamePhase::Finished => "The game is finished. Thank you!",
                    GamePhase::Ended => "The game has ended.",
                };
                set_text(&self.status, status);
            }
            GameUpdate::ConnectionType(kind) => set_text(
                &self.connection_type,
                match kind {
                    ConnectionKind::Direct => "direct",
                    ConnectionKind::Relay => "relay",
                },
            ),
            GameUpdate::Quality(level) => {
                let text = match level {
                    QualityLevel::Ok => "ok",
                    QualityLevel::Warning => "warning",
                    QualityLevel::Critical => "critical",
                };
                set_text(&self.quality, text);
                if let Some(el) = &self.quality {
                    let _ = el.set_attribute("data-level", text);
                }
                let warning = match level {
                    QualityLevel::Ok => "",
                    QualityLevel::Warning => {
                        "Your connection to your partner is slow. Please close other programs \
                         or downloads if you can."
                    }
                    QualityLevel::Critical => {
                        "Your connection to your partner is very slow; the game may not work \
                         well."
                    }
                };
                set_text(&self.quality_warning, warning);
                set_hidden(&self.quality_warning, warning.is_empty());
            }
            GameUpdate::Episode(n) => set_text(&self.episode, &n.to_string()),
            GameUpdate::Frames(n) => set_text(&self.frames, &n.to_string()),
            GameUpdate::Message(m) => set_text(&self.message, m),
            GameUpdate::Summary(_) => {}
        }
    }

    /// The `#message` text (the timeout message).
    pub fn set_message(&self, text: &str) {
        set_text(&self.message, text);
    }

    /// The `#error` text; empty clears it.
    pub fn set_error(&self, text: &str) {
        set_text(&self.error, text);
    }
}
