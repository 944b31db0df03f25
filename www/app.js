// The built-in participant page (www/index.html), written on pairlab.js's public API only:
// waitroom, probe, the demo game (demo.js), timeout, outcome and errors, per the DOM contract
// documented at the top of index.html. The participant-facing words live here.

const $ = (id) => document.getElementById(id);
const body = document.body;

const text = (id, value) => { const el = $(id); if (el) el.textContent = value; };
const hide = (id, hidden) => { const el = $(id); if (el) el.hidden = hidden; };

function setState(state, status) {
  body.dataset.state = state;
  text("status", status);
  if (!["connecting", "waitroom", "probing"].includes(state)) stopCountdown();
  if (state !== "waitroom") hide("leave-button", true);
}

/** Time left as m:ss, rounded up to the whole second (so 0:00 shows only at the end). */
function formatCountdown(remainingMs) {
  const secs = Number.isFinite(remainingMs) && remainingMs > 0 ? Math.ceil(remainingMs / 1000) : 0;
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
}

let countdownTimer = null;
function startCountdown(remainingMs) {
  const deadline = performance.now() + remainingMs;
  const draw = () => text("countdown", formatCountdown(deadline - performance.now()));
  draw();
  clearInterval(countdownTimer);
  countdownTimer = setInterval(draw, 250);
}
function stopCountdown() {
  clearInterval(countdownTimer);
  countdownTimer = null;
}

const partners = (n) => (n <= 2 ? "a partner" : "other participants");

const ERROR_STATUS = {
  bad_message: "The server refused a message from this page.",
  unknown_type: "The server refused a message from this page.",
  not_a_member: "The server refused a message from this page.",
  hello_required: "The server did not accept this page's greeting.",
  invalid_subject_id: "Your participant id is not valid.",
  unknown_scene: "This study link names an experiment that does not exist.",
  id_in_use: "This participant id is already in use: the study is open in another tab or "
    + "window, or you have taken part already.",
  already_done: "You have already taken part in this study.",
  invalid_link: "This page needs your personal study link; please open the exact link you were given.",
  rate_limited: "This page sent too many messages and was disconnected.",
  entry_refused: "This study cannot be taken part in from here.",
  invalid_link_id: "This study link cannot be used.",
};

const PHASE_STATUS = {
  connecting: "Connecting to your partner…",
  playing: "Your game is running.",
  restarting: "Reconnecting to your partner…",
  finished: "The game is finished. Thank you!",
  ended: "The game has ended.",
};

const QUALITY_WARNING = {
  ok: "",
  warning: "Your connection to your partner is slow. Please close other programs or downloads if you can.",
  critical: "Your connection to your partner is very slow; the game may not work well.",
};
const LEVELS = ["ok", "warning", "critical"];

/** Starts the page with the pairlab module and the demo game's class. */
export async function startPage(pairlab, Dots) {
  const session = await pairlab.join();
  text("subject-id", session.subjectId);
  let groupSize = 2;
  let leaveAfterMs = null;
  let leaveTimer = null;
  let leaveDue = false;
  const kinds = new Map(); // peer → "direct" | "relay"
  const levels = new Map(); // peer → quality level

  session
    .on("connecting", ({ attempt }) => {
      setState("connecting", attempt === 0 ? "Connecting…" : "Reconnecting to the server…");
    })
    .on("welcome", (w) => {
      groupSize = w.groupSize;
      leaveAfterMs = w.leaveButtonAfterMs;
      if (w.hideLobbyCount) { text("waiting-count", ""); hide("lobby", true); }
      text("error", "");
      setState("connecting", "Connected. Measuring your connection…");
    })
    .on("waitroom", (w) => {
      groupSize = w.groupSize;
      const shown = w.waiting !== null;
      text("waiting-count", shown ? String(w.waiting) : "");
      hide("lobby", !shown);
      hide("waiting-count", !shown);
      startCountdown(w.remainingMs);
      setState("waitroom", `Waiting for ${partners(groupSize)}…`);
      // The leave button: leaveButtonAfterMs after first entering the waitroom.
      if (leaveAfterMs !== null && leaveTimer === null) {
        leaveTimer = setTimeout(() => {
          leaveDue = true;
          if (body.dataset.state === "waitroom") hide("leave-button", false);
        }, leaveAfterMs);
      }
      if (leaveDue) hide("leave-button", false);
    })
    .on("probing", () => {
      const which = groupSize <= 2 ? "your partner" : "your partners";
      setState("probing", `Checking the connection to ${which}…`);
    })
    .on("matched", (m) => {
      clearTimeout(leaveTimer);
      text("game-id", m.gameId);
      text("player-index", String(m.playerIndex + 1));
      $("player-index")?.setAttribute("data-player-index", String(m.playerIndex));
      text("player-count", String(m.groupSize));
      setState("game", "Your game has started.");
      const game = new Dots($("game-canvas"), m.playerIndex, m.groupSize);
      // The page's view of the loop: #episode and #frames.
      const logic = {
        episodeStart(n) { text("episode", String(n)); text("frames", "0"); game.episodeStart(n); },
        readInput: () => game.readInput(),
        step(frame, inputs) { game.step(frame, inputs); text("frames", String(frame + 1)); },
      };
      session.play(logic)
        .then(() => session.finish())
        .catch((err) => console.warn("[pairlab] the game stopped:", err.message))
        .finally(() => game.stop());
    })
    .on("phase", ({ phase }) => {
      body.dataset.gamePhase = phase;
      if (body.dataset.state === "game") text("status", PHASE_STATUS[phase]);
    })
    .on("connection_type", ({ peer, type }) => {
      kinds.set(peer, type);
      text("connection-type", [...kinds.values()].includes("relay") ? "relay" : "direct");
    })
    .on("quality", ({ peer, level }) => {
      levels.set(peer, level);
      const worst = LEVELS[Math.max(...[...levels.values()].map((l) => LEVELS.indexOf(l)))];
      text("quality", worst);
      $("quality")?.setAttribute("data-level", worst);
      text("quality-warning", QUALITY_WARNING[worst]);
      hide("quality-warning", worst === "ok");
    })
    .on("connection_failed", () => text("message", "The connection to your partner was lost."))
    .on("ended", ({ message }) => text("message", message))
    .on("timeout", ({ message }) => {
      text("message", message);
      text("countdown", formatCountdown(0));
      setState("timeout", "The waiting time is over.");
    })
    .on("outcome", (o) => {
      const code = o.completionCode ? ` Your completion code: ${o.completionCode}.` : "";
      text("message", o.message + code);
      // A waitroom timeout keeps its own state.
      if (body.dataset.state !== "timeout") setState("finished", "You are done. Thank you!");
    })
    .on("error", (e) => {
      const detail = `${e.message.trim()} (${e.code})`;
      text("error", e.fatal ? detail : `The server refused a message from this page: ${detail}`);
      if (e.fatal) setState("error", ERROR_STATUS[e.code] ?? "The study cannot go on.");
    })
    .on("closed", ({ lost, welcomed, detail }) => {
      if (!lost) return;
      const [status, advice] = welcomed
        ? ["The connection to the server was lost.",
          "The connection to the study server was lost. Please check your internet connection and reload this page."]
        : ["The study server could not be reached.",
          "The study server could not be reached. Please check your internet connection and reload this page in a minute."];
      setState("closed", status);
      text("error", `${advice} (Details: ${detail}.)`);
    });

  $("leave-button")?.addEventListener("click", (ev) => {
    ev.currentTarget.disabled = true;
    try {
      session.leave();
      text("status", "Leaving the study…");
    } catch (err) {
      ev.currentTarget.disabled = false;
      text("error", err.message);
    }
  });
}
