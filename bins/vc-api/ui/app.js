// The dashboard's shell: login, layout, hash routes, the feed indicator. Pages live in their own
// modules; each is `render(main, route, ctx)` and returns a cleanup function (its feed subscriptions).

import * as api from "./api.js";
import { h, fill, field, input, toast } from "./dom.js";
import * as live from "./live.js";
import * as models from "./models.js";
import * as realms from "./realms.js";
import * as agents from "./agents.js";
import * as ops from "./ops.js";

const root = document.getElementById("app");
let session = null;
let cleanup = null;
let shell = null;

const PAGES = [
  { path: "models", label: "Models", admin: true, list: models.list, detail: models.detail },
  { path: "realms", label: "Realms", admin: false, list: realms.list, detail: realms.detail },
  { path: "agents", label: "Agents", admin: false, list: agents.list, detail: agents.detail },
  { path: "tokens", label: "Access tokens", admin: true, list: ops.tokens, detail: null, section: "Administration" },
  { path: "litellm", label: "LiteLLM", admin: true, list: ops.litellm, detail: null },
  { path: "audit", label: "Audit log", admin: true, list: ops.audit, detail: null },
];

/** `#/agents/<did>?tab=config` → {page: "agents", id: "<did>", query: URLSearchParams}. */
export function parseRoute(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const [page, ...rest] = path.split("/");
  return {
    page: page || "",
    id: rest.length ? decodeURIComponent(rest.join("/")) : null,
    query: new URLSearchParams(qs || ""),
  };
}

/** Navigates to a route (`go("agents", did, {tab: "config"})`). */
export function go(page, id, query) {
  let hash = `#/${page}`;
  if (id) hash += `/${encodeURIComponent(id)}`;
  const q = new URLSearchParams(query || {}).toString();
  if (q) hash += `?${q}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Changes the query of the current route without re-rendering the page (tabs, filters, cursors). */
export function replaceQuery(query) {
  const r = parseRoute();
  let hash = `#/${r.page}`;
  if (r.id) hash += `/${encodeURIComponent(r.id)}`;
  const q = new URLSearchParams(query).toString();
  if (q) hash += `?${q}`;
  history.replaceState(null, "", hash);
}

function showLogin(message) {
  live.stop();
  if (cleanup) cleanup();
  cleanup = null;
  shell = null;
  session = null;
  document.title = "Sign in · vaultysclaw";
  const token = field(
    "Access token",
    input("token", { type: "password", autocomplete: "current-password", required: true }),
    "The admin token, or a realm admin's token.",
  );
  const error = h("p", { class: "form-error", role: "alert", hidden: !message }, message || "");
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login-card",
      "aria-labelledby": "login-title",
      on: {
        submit: async (e) => {
          e.preventDefault();
          submit.disabled = true;
          error.hidden = true;
          try {
            session = await api.login(token.control.value.trim());
            token.control.value = "";
            const r = parseRoute();
            start(r.page && r.page !== "login" ? null : defaultPage());
          } catch (err) {
            error.textContent = err.status === 401 ? "That token is not valid." : err.message;
            error.hidden = false;
            token.control.focus();
          } finally {
            submit.disabled = false;
          }
        },
      },
    },
    h("div", { class: "brand brand-large" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "◆"), "vaultysclaw"),
    h("h1", { id: "login-title" }, "Sign in"),
    token,
    error,
    submit,
  );
  fill(root, h("main", { class: "login", id: "main" }, form));
  token.control.focus();
}

function defaultPage() {
  return session.admin ? "models" : "realms";
}

function buildShell() {
  const nav = h(
    "nav",
    { class: "sidebar", "aria-label": "Main", id: "sidebar" },
    h(
      "ul",
      {},
      PAGES.filter((p) => session.admin || !p.admin).map((p) => [
        p.section ? h("li", { class: "nav-section", "aria-hidden": "true" }, p.section) : null,
        h("li", {}, h("a", { href: `#/${p.path}`, dataset: { page: p.path } }, p.label)),
      ]),
    ),
  );
  const status = h("span", { class: "live-state", role: "status" });
  live.onState((s) => {
    const text = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", off: "Offline" }[s];
    status.textContent = text;
    status.dataset.state = s;
  });
  const menu = h(
    "button",
    {
      type: "button",
      class: "btn btn-ghost menu-toggle",
      "aria-controls": "sidebar",
      "aria-expanded": "false",
      on: {
        click: () => {
          const open = nav.classList.toggle("open");
          menu.setAttribute("aria-expanded", String(open));
        },
      },
    },
    "Menu",
  );
  const logout = h(
    "button",
    {
      type: "button",
      class: "btn",
      on: {
        click: async () => {
          live.stop();
          try {
            await api.logout();
          } catch (e) {
            toast(`Logout: ${e.message}`, "err");
          }
          location.hash = "#/login";
          showLogin("You are signed out.");
        },
      },
    },
    "Log out",
  );
  const who = session.admin ? "Admin" : `Realm admin (${session.realmIds.length} realm${session.realmIds.length === 1 ? "" : "s"})`;
  const main = h("main", { id: "main", tabindex: "-1" });
  fill(
    root,
    h("a", { class: "skip", href: "#main", on: { click: (e) => { e.preventDefault(); main.focus(); } } }, "Skip to content"),
    h(
      "header",
      { class: "topbar" },
      menu,
      h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "◆"), "vaultysclaw"),
      h("div", { class: "topbar-right" }, status, h("span", { class: "who" }, who), logout),
    ),
    h("div", { class: "shell" }, nav, main),
  );
  shell = { nav, main, menu };
}

async function route() {
  if (!session) return;
  const r = parseRoute();
  const page = PAGES.find((p) => p.path === r.page && (session.admin || !p.admin));
  if (!page) {
    go(defaultPage());
    return;
  }
  if (!shell) buildShell();
  for (const a of shell.nav.querySelectorAll("a")) {
    if (a.dataset.page === page.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  shell.nav.classList.remove("open");
  shell.menu.setAttribute("aria-expanded", "false");
  if (cleanup) cleanup();
  cleanup = null;
  const main = shell.main;
  fill(main, h("p", { class: "loading" }, "Loading…"));
  const ctx = { session, go, replaceQuery };
  try {
    const view = r.id && page.detail ? page.detail : page.list;
    cleanup = (await view(main, r, ctx)) || null;
  } catch (e) {
    if (e.status === 401) return;
    fill(main, h("h1", {}, page.label), h("p", { class: "form-error", role: "alert" }, e.message));
  }
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : page.label} · vaultysclaw`;
}

function start(page) {
  api.setUnauthorizedHandler(() => showLogin("Your session ended. Sign in again."));
  live.start();
  shell = null;
  if (page) go(page);
  else route();
}

window.addEventListener("hashchange", () => {
  if (parseRoute().page === "login") return;
  route().then(() => shell?.main.focus({ preventScroll: true }));
});

async function boot() {
  try {
    session = await api.currentSession();
  } catch (e) {
    fill(root, h("main", { id: "main" }, h("p", { class: "form-error", role: "alert" }, e.message)));
    return;
  }
  if (!session) showLogin();
  else start(parseRoute().page && parseRoute().page !== "login" ? null : defaultPage());
}

boot();
