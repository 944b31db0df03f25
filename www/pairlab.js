// pairlab's JavaScript API (docs/CLIENT_API.md): pair participants by measured latency, then
// talk to partners over the verified WebRTC game connection, record events, and finish.
//
//   import { join } from "https://pairlab.example/pairlab.js";
//   const session = await join({ scene: "dyads" });
//   session.on("matched", (m) => session.send("all", "hello"));
//   session.on("message", (m) => console.log(m.from, m.data));
//
// The work is done by the wasm client (./pkg/, next to this file; the WebSocket goes to this
// file's origin unless join({ server }) says otherwise). This file only loads it and gives
// it the on/off surface and the promise of finish().

/** The API's version: raised when something here changes incompatibly. */
export const API_VERSION = 1;

let loading = null;

/**
 * Loads the wasm client (once; later calls return the same promise). `join` calls it; call it
 * earlier to overlap the download with something else. `module` and `wasm` are URLs of
 * pairlab_client.js and its .wasm, relative to the page (default: ./pkg/ next to this file).
 */
export function load({ module, wasm } = {}) {
  if (!loading) {
    const at = (url, fallback) => new URL(url || fallback, url ? document.baseURI : import.meta.url);
    loading = (async () => {
      const client = await import(at(module, "./pkg/pairlab_client.js").href);
      await client.default({ module_or_path: at(wasm, "./pkg/pairlab_client_bg.wasm") });
      return client;
    })();
    loading.catch(() => { loading = null; });
  }
  return loading;
}

/** One participant's session; made by join(). */
class Session {
  #client;
  #listeners = new Map();
  #outcome = null;

  constructor(client) {
    this.#client = client;
    // Kept for finish(): the outcome may come before (or without) a call to finish().
    this.on("outcome", (o) => { this.#outcome = o; });
  }

  /** @internal Receives every event from the wasm client. */
  _dispatch(name, detail) {
    for (const key of [name, "*"]) {
      for (const fn of [...(this.#listeners.get(key) || [])]) {
        try {
          key === "*" ? fn(name, detail) : fn(detail);
        } catch (err) {
          console.error(`[pairlab] a "${name}" listener threw:`, err);
        }
      }
    }
  }

  /** Calls fn(detail) on every `name` event ("*": fn(name, detail) on all). */
  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return this;
  }

  /** Removes a listener added with on(). */
  off(name, fn) {
    this.#listeners.get(name)?.delete(fn);
    return this;
  }

  /** The participant's id (never sent to partners). */
  get subjectId() {
    return this.#client.subjectId;
  }

  /** Sends a string or bytes to a player index or "all" over the game connection. */
  send(to, data, { reliable = true } = {}) {
    this.#client.send(to, data, reliable);
  }

  /** Adds a `custom` line to the research record: event name and a plain object. */
  record(event, fields = {}) {
    this.#client.record(event, fields);
  }

  /** Says the participant is done; resolves to the outcome event's detail. */
  finish({ outcome = "completed" } = {}) {
    if (this.#outcome) return Promise.resolve(this.#outcome);
    return new Promise((resolve, reject) => {
      const done = (o) => { this.off("outcome", done).off("closed", lost); resolve(o); };
      const lost = (c) => {
        this.off("outcome", done).off("closed", lost);
        reject(new Error(`pairlab: the connection closed before the outcome (${c.detail})`));
      };
      this.on("outcome", done).on("closed", lost);
      try {
        this.#client.finish(outcome);
      } catch (err) {
        this.off("outcome", done).off("closed", lost);
        reject(err);
      }
    });
  }

  /** The participant quits (the server answers with an outcome). */
  leave() {
    this.#client.leave();
  }

  /** Runs the built-in lockstep loop; resolves to the number of episodes played. */
  play(logic) {
    return new Promise((resolve, reject) => {
      this.#client.play(logic, (err, episodes) => (err ? reject(err) : resolve(episodes)));
    });
  }

  /** Ends the session in this page without leaving (closes the connections). */
  close() {
    this.#client.close();
  }
}

/**
 * Joins a study: resolves to a Session once the client is loaded; the connection follows
 * (listen for "welcome", "waitroom", "matched", …; no event is missed by listeners added
 * right after this resolves).
 */
export async function join({ scene, subjectId, server, redirect = true } = {}) {
  const ws = new URL("/ws", server ?? import.meta.url);
  const scheme = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" }[ws.protocol];
  if (!scheme) throw new Error(`pairlab: server ${server} is not an http(s):// or ws(s):// URL`);
  ws.protocol = scheme;
  const client = await load();
  let session = null;
  const wasmSession = new client.WasmSession(
    { scene, subjectId, wsUrl: ws.href, redirect },
    (name, detail) => session._dispatch(name, detail),
  );
  session = new Session(wasmSession);
  return session;
}
