// The demo task, as a logic for session.play(): every player moves a dot on a shared canvas
// with the arrow keys (or WASD). Copy this file to write a study's own game: read this
// participant's input as a whole number (readInput), advance the shared state with every
// player's input of the frame (step), reset at episodeStart. The loop, the input delay, the
// redundant sending, the connection and the research record are pairlab's.
//
// Inputs are a bit mask of the held keys. The state advances only through step, with the
// same inputs on every page (up to the delay), so every page draws the same picture.

export const UP = 1, DOWN = 2, LEFT = 4, RIGHT = 8;
const KEYS = {
  ArrowUp: UP, w: UP, W: UP, ArrowDown: DOWN, s: DOWN, S: DOWN,
  ArrowLeft: LEFT, a: LEFT, A: LEFT, ArrowRight: RIGHT, d: RIGHT, D: RIGHT,
};
const SPEED = 3; // px per frame
const RADIUS = 10; // px
const COLOURS = ["#2f6fde", "#d0452f", "#1f8a4c", "#8a3fd0"];

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** One dot's next position: moves by `input` within a width × height field. */
export function advance([x, y], input, width, height) {
  const dx = (input & RIGHT ? 1 : 0) - (input & LEFT ? 1 : 0);
  const dy = (input & DOWN ? 1 : 0) - (input & UP ? 1 : 0);
  return [clamp(x + dx * SPEED, RADIUS, width - RADIUS), clamp(y + dy * SPEED, RADIUS, height - RADIUS)];
}

/** The dots game on `canvas` (none: nothing drawn) for `players` players; this one is `me`. */
export class Dots {
  constructor(canvas, me, players) {
    this.ctx = canvas?.getContext("2d") ?? null;
    this.width = canvas?.width ?? 320;
    this.height = canvas?.height ?? 240;
    this.me = me;
    this.players = players;
    this.keys = 0;
    this.onDown = (ev) => {
      const bit = KEYS[ev.key] ?? 0;
      if (bit) { ev.preventDefault(); this.keys |= bit; } // the arrows must not scroll
    };
    this.onUp = (ev) => { this.keys &= ~(KEYS[ev.key] ?? 0); };
    addEventListener("keydown", this.onDown);
    addEventListener("keyup", this.onUp);
    this.reset();
  }

  reset() {
    const n = Math.max(this.players, 1);
    this.positions = Array.from({ length: this.players },
      (_, i) => [(this.width * (i + 1)) / (n + 1), this.height / 2]);
  }

  draw() {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.fillStyle = "#f4f5f7";
    ctx.fillRect(0, 0, this.width, this.height);
    this.positions.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x, y, RADIUS, 0, 2 * Math.PI);
      ctx.fillStyle = COLOURS[i % COLOURS.length];
      ctx.fill();
      if (i === this.me) {
        ctx.strokeStyle = "#1d2330";
        ctx.lineWidth = 3;
        ctx.stroke();
      }
    });
  }

  episodeStart() { this.reset(); this.draw(); }

  readInput() { return this.keys; }

  step(frame, inputs) {
    this.positions = this.positions.map((p, i) => advance(p, inputs[i] ?? 0, this.width, this.height));
    this.draw();
  }

  /** Removes the key listeners. */
  stop() {
    removeEventListener("keydown", this.onDown);
    removeEventListener("keyup", this.onUp);
  }
}
