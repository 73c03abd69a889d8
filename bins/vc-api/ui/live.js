// The change feed (`GET /api/events`, Server-Sent Events): one EventSource for the whole page, shared
// by the views that are on screen. The browser resumes with Last-Event-ID after a drop; a `reset` (the
// feed lost events older than the stream keeps) makes every view reload.

const KINDS = [
  "model.registered", "model.updated", "model.deleted",
  "realm.created", "realm.updated", "realm.deleted", "realm.grant", "realm.revoke",
  "realm.key.minted", "realm.key.updated", "realm.key.deleted",
  "realm.agent.added", "realm.agent.removed",
  "agent.registered", "agent.deleted", "agent.config.pushed", "realm.config.pushed",
  "agent.presence", "agent.acked",
  "token.created", "token.deleted",
];

let source = null;
const listeners = new Set();
const stateListeners = new Set();
let state = "off";

function setState(s) {
  state = s;
  for (const f of stateListeners) f(s);
}

function dispatch(ev) {
  for (const f of [...listeners]) {
    try {
      f(ev);
    } catch (e) {
      console.warn("live view update failed", e);
    }
  }
}

/** Opens the feed (once per session). */
export function start() {
  if (source) return;
  setState("connecting");
  source = new EventSource("/api/events");
  source.addEventListener("open", () => setState("live"));
  source.addEventListener("error", () => {
    // The browser retries by itself while readyState is CONNECTING; CLOSED means it gave up (the
    // session ended, or the feed refused us): the app's next request finds out which.
    setState(source && source.readyState === EventSource.CLOSED ? "off" : "reconnecting");
  });
  for (const kind of KINDS) {
    source.addEventListener(kind, (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      dispatch(ev);
    });
  }
  source.addEventListener("reset", () => dispatch({ kind: "reset", details: {} }));
}

/** Closes the feed (at logout, before the session ends, so the browser does not retry). */
export function stop() {
  if (source) source.close();
  source = null;
  setState("off");
}

/** Calls f(event) for every event until the returned function is called. */
export function subscribe(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** Calls f(state) now and whenever the feed's state changes ("live", "reconnecting", "off"). */
export function onState(f) {
  stateListeners.add(f);
  f(state);
  return () => stateListeners.delete(f);
}

/**
 * The feed subscriptions and timers of one view: `stop()` ends them all, so nothing fires (and no
 * request leaves) after the view is gone. `later(f, ms)` is a debounced f.
 */
export function scope() {
  const subs = [];
  const timers = new Set();
  let stopped = false;
  return {
    get stopped() {
      return stopped;
    },
    on(f) {
      subs.push(subscribe((ev) => !stopped && f(ev)));
    },
    later(f, ms) {
      let t = null;
      return (...args) => {
        clearTimeout(t);
        timers.delete(t);
        t = setTimeout(() => {
          timers.delete(t);
          if (!stopped) f(...args);
        }, ms);
        timers.add(t);
      };
    },
    stop() {
      stopped = true;
      for (const u of subs) u();
      for (const t of timers) clearTimeout(t);
    },
  };
}

/** The agents an event is about, with what it says of each: [{did, online?, edgeId?, acked?}]. */
export function agentChanges(ev) {
  const d = ev.details || {};
  if (ev.kind === "agent.presence") {
    return (d.changes || []).map((c) => ({
      did: c.did,
      online: c.online,
      edgeId: c.online ? d.edgeId : null,
      at: c.at,
      activeLlm: c.activeLlm,
    }));
  }
  if (ev.kind === "agent.acked") return (d.acks || []).map((a) => ({ did: a.did, acked: a.version }));
  return [];
}

/** The id an event is about: `model:<id>` → {type: "model", id}. */
export function subjectOf(ev) {
  const s = String(ev.subject || "");
  const i = s.indexOf(":");
  return i < 0 ? { type: s, id: "" } : { type: s.slice(0, i), id: s.slice(i + 1) };
}
