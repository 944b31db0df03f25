// The live monitor page: renders each `snapshot` of /monitor/events (the JSON of the server's
// monitor::Snapshot) into the DOM contract described in monitor.html. Text only (textContent):
// record lines carry participants' own strings.

const token = new URLSearchParams(location.search).get("token") ?? "";
// Keep the token out of the address bar and history from here on.
history.replaceState(null, "", location.pathname);

const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.textContent = text;
  return e;
};
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
const pairs = (obj) => Object.entries(obj).map(([k, n]) => `${k}: ${n}`).join(", ") || "none";

function field(name, value, label = name.replaceAll("-", " ")) {
  const d = el("div", {}, `${label}: `);
  d.append(el("b", { "data-field": name }, String(value)));
  return d;
}

function list(name, items) {
  const ul = el("ul", { "data-field": name });
  for (const [attrs, text] of items) ul.append(el("li", attrs, text));
  return ul;
}

function histogram(name, h, unit) {
  const max = Math.max(1, ...h.counts);
  const bars = el("div", { class: "hist", "data-field": name });
  const labels = el("div", { class: "labels" });
  h.counts.forEach((n, i) => {
    const le = i < h.bounds_ms.length ? String(h.bounds_ms[i]) : "inf";
    const bar = el("div", { class: "bar", "data-le": le, "data-count": String(n), title: `≤ ${le} ${unit}: ${n}` });
    bar.style.height = `${(100 * n) / max}%`;
    bars.append(bar);
    labels.append(el("span", {}, le === "inf" ? "more" : unit === "s" ? String(h.bounds_ms[i] / 1000) : le));
  });
  const box = el("div");
  box.append(bars, labels);
  return box;
}

function scene(s) {
  const sec = el("section", { class: "scene", "data-scene": s.scene_id });
  sec.append(el("h2", {}, `Scene ${s.scene_id}`));
  const grid = el("div", { class: "grid" });
  const col = (title, ...parts) => {
    const d = el("div");
    d.append(el("h3", {}, title), ...parts);
    grid.append(d);
  };
  col("Waiting",
    field("waiting-now", s.waiting_now, "waiting now (server)"),
    field("waiting-count", s.waiting_count, "waiting (record)"),
    field("waitroom-timeouts", s.waitroom_timeouts),
    list("waiting", s.waiting.map((w) => [{}, `${w.who} ${secs(w.waited_ms)}`])));
  col("Probes",
    field("probes-in-flight", s.probes.length), field("probes-accepted", s.probes_accepted),
    field("probes-rejected", pairs(s.probes_rejected)),
    list("probes", s.probes.map((p) => [{ "data-probe": p.probe_session_id }, `${p.members.join(" ↔ ")} ${secs(p.running_ms)}`])));
  col("Games",
    field("games-running", s.games.length), field("games-created", s.games_created),
    field("games-ended", pairs(s.games_ended)),
    list("games", s.games.map((g) => [{ "data-game-id": g.game_id },
      `${g.game_id}: ${g.players.join(", ")} ${secs(g.running_ms)} ` +
      g.links.map((l) => `[${l.from}→${l.to} ${l.connection_type ?? "connecting"} ${l.quality ?? ""}${l.rtt_ms == null ? "" : ` ${Math.round(l.rtt_ms)} ms`}]`).join(" ")])));
  col("P2P RTT (ms)", histogram("rtt-histogram", s.p2p_rtt_histogram, "ms"));
  col("Wait to game (s)", histogram("wait-histogram", s.wait_histogram, "s"));
  sec.append(grid);
  return sec;
}

function render(snap) {
  document.getElementById("scenes").replaceChildren(...snap.scenes.map(scene));
  document.getElementById("recent").replaceChildren(...snap.recent.map((r) =>
    el("li", {}, `${secs(r.ago_ms)} ago [${r.scene_id}] ${JSON.stringify(r.line)}`)));
  const names = snap.subject_ids ? "subject ids" : "aliases";
  document.getElementById("status").textContent = `live, ${new Date().toLocaleTimeString()} (${names})`;
}

const events = new EventSource(`/monitor/events?token=${encodeURIComponent(token)}`);
events.addEventListener("snapshot", (e) => {
  document.body.dataset.connected = "true";
  render(JSON.parse(e.data));
});
events.onerror = () => {
  document.body.dataset.connected = "false";
  document.getElementById("status").textContent = "disconnected; retrying…";
};
