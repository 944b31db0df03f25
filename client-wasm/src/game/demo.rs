//! The demo task: every player moves a dot on a shared canvas with the arrow keys (or WASD).
//!
//! This file is the example to copy when writing a study's own game: implement
//! [`GameLogic`] — read this participant's input as a `u32` ([`GameLogic::read_input`]),
//! advance the shared state with every player's input of the frame ([`GameLogic::step`]),
//! reset at [`GameLogic::episode_start`] — and hand it to [`super::Game::start`]. The loop,
//! the input delay, the redundant sending, the connection and the research record are the
//! framework's.
//!
//! Inputs are a bit mask of the held keys ([`UP`], [`DOWN`], [`LEFT`], [`RIGHT`]). The state
//! advances only through `step`, with the same inputs on every page (up to the delay), so
//! every page draws the same picture.

use std::cell::Cell;
use std::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, KeyboardEvent, Window};

use super::GameLogic;

/// Input bit: up held.
pub const UP: u32 = 1;
/// Input bit: down held.
pub const DOWN: u32 = 2;
/// Input bit: left held.
pub const LEFT: u32 = 4;
/// Input bit: right held.
pub const RIGHT: u32 = 8;

/// Pixels per frame at full speed.
const SPEED: f64 = 3.0;
/// Dot radius, px.
const RADIUS: f64 = 10.0;
/// Player colours, by player index.
const COLOURS: [&str; 4] = ["#2f6fde", "#d0452f", "#1f8a4c", "#8a3fd0"];

/// The key of a `KeyboardEvent.key` value, as an input bit.
pub fn key_bit(key: &str) -> u32 {
    match key {
        "ArrowUp" | "w" | "W" => UP,
        "ArrowDown" | "s" | "S" => DOWN,
        "ArrowLeft" | "a" | "A" => LEFT,
        "ArrowRight" | "d" | "D" => RIGHT,
        _ => 0,
    }
}

/// One dot's next position: moves by the input within a `width` × `height` field.
pub fn advance((x, y): (f64, f64), input: u32, width: f64, height: f64) -> (f64, f64) {
    let dx = f64::from(u8::from(input & RIGHT != 0)) - f64::from(u8::from(input & LEFT != 0));
    let dy = f64::from(u8::from(input & DOWN != 0)) - f64::from(u8::from(input & UP != 0));
    (
        (x + dx * SPEED).clamp(RADIUS, width - RADIUS),
        (y + dy * SPEED).clamp(RADIUS, height - RADIUS),
    )
}

/// The dots game on a canvas. Owns its key listeners and removes them when dropped.
pub struct Dots {
    ctx: Option<CanvasRenderingContext2d>,
    width: f64,
    height: f64,
    me: usize,
    players: usize,
    positions: Vec<(f64, f64)>,
    keys: Rc<Cell<u32>>,
    /// `keydown` and `keyup` on the window; each removed when dropped.
    _key_listeners: [EventListener; 2],
}

impl Dots {
    /// A game for `players` players, drawn on `canvas` (none: nothing is drawn), where this
    /// participant is player `me`.
    pub fn new(
        window: Window,
        canvas: Option<HtmlCanvasElement>,
        me: usize,
        players: usize,
    ) -> Self {
        let (ctx, width, height) = match &canvas {
            Some(c) => (
                c.get_context("2d")
                    .ok()
                    .flatten()
                    .and_then(|o| o.dyn_into::<CanvasRenderingContext2d>().ok()),
                f64::from(c.width()),
                f64::from(c.height()),
            ),
            None => (None, 320.0, 240.0),
        };
        let keys = Rc::new(Cell::new(0u32));
        let on_key_down = {
            let keys = Rc::clone(&keys);
            // Not passive: the arrow keys must not scroll the page.
            let options = EventListenerOptions::enable_prevent_default();
            EventListener::new_with_options(&window, "keydown", options, move |ev| {
                let ev = ev.unchecked_ref::<KeyboardEvent>();
                let bit = key_bit(&ev.key());
                if bit != 0 {
                    ev.prevent_default();
                    keys.set(keys.get() | bit);
                }
            })
        };
        let on_key_up = {
            let keys = Rc::clone(&keys);
            EventListener::new(&window, "keyup", move |ev| {
                let ev = ev.unchecked_ref::<KeyboardEvent>();
                keys.set(keys.get() & !key_bit(&ev.key()));
            })
        };
        let mut game = Self {
            ctx,
            width,
            height,
            me,
            players,
            positions: Vec::new(),
            keys,
            _key_listeners: [on_key_down, on_key_up],
        };
        game.reset();
        game
    }

    fn reset(&mut self) {
        let n = self.players.max(1) as f64;
        self.positions = (0..self.players)
            .map(|i| (self.width * (i as f64 + 1.0) / (n + 1.0), self.height / 2.0))
            .collect();
    }

    fn draw(&self) {
        let Some(ctx) = &self.ctx else {
            return;
        };
        ctx.set_fill_style_str("#f4f5f7");
        ctx.fill_rect(0.0, 0.0, self.width, self.height);
        for (i, (x, y)) in self.positions.iter().enumerate() {
            ctx.begin_path();
            let _ = ctx.arc(*x, *y, RADIUS, 0.0, std::f64::consts::TAU);
            ctx.set_fill_style_str(COLOURS[i % COLOURS.len()]);
            ctx.fill();
            if i == self.me {
                ctx.set_stroke_style_str("#1d2330");
                ctx.set_line_width(3.0);
                ctx.stroke();
            }
        }
    }
}

impl GameLogic for Dots {
    fn episode_start(&mut self, _episode: u32) {
        self.reset();
        self.draw();
    }

    fn read_input(&mut self) -> u32 {
        self.keys.get()
    }

    fn step(&mut self, _frame: u32, inputs: &[u32]) {
        for (pos, input) in self.positions.iter_mut().zip(inputs) {
            *pos = advance(*pos, *input, self.width, self.height);
        }
        self.draw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_moves() {
        assert_eq!(key_bit("ArrowUp"), UP);
        assert_eq!(key_bit("d"), RIGHT);
        assert_eq!(key_bit("x"), 0);
        assert_eq!(
            advance((50.0, 50.0), RIGHT | DOWN, 100.0, 100.0),
            (53.0, 53.0)
        );
        assert_eq!(
            advance((50.0, 50.0), LEFT | RIGHT, 100.0, 100.0),
            (50.0, 50.0)
        );
        assert_eq!(
            advance((11.0, 50.0), LEFT, 100.0, 100.0),
            (RADIUS, 50.0),
            "clamped"
        );
    }
}
