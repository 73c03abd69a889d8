// The global admin's operations pages: realm-admin tokens (the secret shown once), LiteLLM status with
// a reconcile, and the audit log (paged).

import * as api from "./api.js";
import { h, fill, field, input, badge, time, empty, table, formDialog, dangerButton, toast, modal, shortDid } from "./dom.js";
import * as live from "./live.js";

/** `#/tokens` */
export async function tokens(main, route, ctx) {
  const body = h("div", { class: "list-body" });
  const create = h("button", { type: "button", class: "btn btn-primary", on: { click: () => createDialog(() => load()) } }, "Create token");
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Access tokens"), h("p", { class: "lede" }, "Realm admins sign in with these. A token manages the agents of its realms and their Realm Routing, nothing else.")), create),
    h("section", { class: "card" }, body),
  );
  let realms = new Map();
  async function load() {
    const [ts, rs] = await Promise.all([api.all("/api/tokens", "tokens"), api.all("/api/realms", "realms")]);
    realms = new Map(rs.map((r) => [r.id, r.name]));
    if (!ts.length) {
      fill(body, empty("No tokens", "Create a token for each realm admin; its secret is shown once.", null));
      return;
    }
    fill(
      body,
      table(
        "Access tokens",
        [
          { label: "Name", cell: (t) => h("span", { class: "strong" }, t.name) },
          { label: "Role", cell: (t) => badge(t.role, "info") },
          { label: "Realms", cell: (t) => h("span", { class: "pills" }, t.realmIds.map((id) => h("span", { class: "pill" }, realms.get(id) || id))) },
          { label: "Created", cell: (t) => time(t.createdAt) },
          {
            label: "Actions",
            cell: (t) =>
              dangerButton("Delete", { title: `Delete the token ${t.name}?`, text: "It stops working at once, and its dashboard sessions end." }, async () => {
                await api.del(`/api/tokens/${api.enc(t.id)}`);
                toast(`Token "${t.name}" deleted.`);
                await load();
              }),
          },
        ],
        ts,
        { key: (t) => t.id },
      ),
    );
  }
  function createDialog(done) {
    const name = field("Name", input("name", { required: true, maxlength: 200 }), "Who holds it, e.g. \"platform team lead\".");
    const boxes = [...realms.entries()].map(([id, n]) => {
      const box = h("input", { type: "checkbox", id: `tok-realm-${id}`, value: id });
      return { box, row: h("div", { class: "check" }, box, h("label", { for: box.id }, n)) };
    });
    const realmIds = h("fieldset", { class: "radios" }, h("legend", {}, "Realms"), boxes.length ? boxes.map((b) => b.row) : h("p", { class: "hint" }, "Create a realm first."));
    // The API names the field `realmIds`: its errors go to the fieldset's own error line.
    const realmField = h("div", {}, realmIds, h("p", { class: "field-error", hidden: true }));
    realmField.control = realmIds;
    realmField.setError = (text) => {
      const p = realmField.querySelector(".field-error");
      p.textContent = text || "";
      p.hidden = !text;
    };
    formDialog({
      title: "Create token",
      fields: { name, realmIds: realmField },
      submitLabel: "Create token",
      submit: async () => {
        const r = await api.post("/api/tokens", {
          name: name.control.value.trim(),
          role: "realm-admin",
          realmIds: boxes.filter((b) => b.box.checked).map((b) => b.box.value),
        });
        done();
        showSecret(r.token.name, r.secret);
      },
    });
  }
  function showSecret(tokenName, secret) {
    const value = h("input", { type: "text", readonly: true, id: "token-secret", value: secret, class: "mono", "aria-describedby": "token-secret-hint" });
    const copy = h(
      "button",
      {
        type: "button",
        class: "btn",
        on: {
          click: async () => {
            value.select();
            try {
              await navigator.clipboard.writeText(secret);
              toast("Copied.");
            } catch {
              toast("Select the text and copy it.", "err");
            }
          },
        },
      },
      "Copy",
    );
    const m = modal(
      `Token "${tokenName}" created`,
      h(
        "div",
        { class: "modal-body" },
        h("label", { for: "token-secret" }, "Secret"),
        value,
        h("p", { class: "hint", id: "token-secret-hint" }, "Shown once: only its hash is stored. Give it to the realm admin now."),
        h("div", { class: "actions" }, copy, h("button", { type: "button", class: "btn btn-primary", on: { click: () => m.close() } }, "Done")),
      ),
    );
    value.focus();
    value.select();
  }
  await load();
  const sc = live.scope();
  const reload = sc.later(() => load().catch(() => {}), 300);
  sc.on((ev) => {
    if (ev.kind === "reset" || ev.kind.startsWith("token.") || ev.kind === "realm.created" || ev.kind === "realm.deleted") reload();
  });
  return sc.stop;
}

function words(camel) {
  const s = camel.replace(/([A-Z])/g, " $1").toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** `#/litellm` */
export async function litellm(main, route, ctx) {
  const card = h("section", { class: "card", "aria-labelledby": "ll-title" });
  const reconcile = h("button", { type: "button", class: "btn btn-primary" }, "Reconcile now");
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "LiteLLM"), h("p", { class: "lede" }, "The proxy the agents call, and how far it drifted from the registry and the realm keys.")), reconcile),
    card,
  );
  let last = null;
  async function load() {
    const s = await api.get("/api/litellm/status");
    last = s.lastReconcileAt;
    const drift = Object.entries(s.drift || {});
    fill(
      card,
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "ll-title" }, "Status"),
        !s.configured
          ? badge("not configured", "muted")
          : s.healthy === null || s.healthy === undefined
            ? badge("not checked yet", "muted")
            : s.healthy
              ? badge("healthy", "ok")
              : badge("unreachable", "err"),
      ),
      h(
        "dl",
        { class: "props" },
        [
          ["Admin URL", s.baseUrl ? h("code", {}, s.baseUrl) : "—"],
          ["URL given to agents", s.publicUrl ? h("code", {}, s.publicUrl) : "—"],
          ["Last reconcile", time(s.lastReconcileAt)],
          ...drift.map(([k, v]) => [words(k), String(v)]),
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      s.configured ? null : h("p", { class: "hint" }, "Set LITELLM_BASE_URL and LITELLM_MASTER_KEY on the workers to sync models and realm keys."),
    );
    reconcile.disabled = !s.configured;
  }
  const sc = live.scope();
  reconcile.addEventListener("click", async () => {
    reconcile.disabled = true;
    try {
      const before = last;
      const r = await api.post("/api/litellm/reconcile");
      toast(`Reconcile started (command ${r.commandId}).`);
      // Follow it: the worker records the result with a new time.
      for (let i = 0; i < 30 && !sc.stopped && last === before; i += 1) {
        await new Promise((done) => setTimeout(done, 1000));
        await load();
      }
    } catch (e) {
      toast(`Reconcile failed: ${e.message}`, "err");
    } finally {
      reconcile.disabled = false;
    }
  });
  await load();
  const timer = setInterval(() => !sc.stopped && load().catch(() => {}), 10000);
  return () => {
    clearInterval(timer);
    sc.stop();
  };
}

/** `#/audit`: the newest events first (the API pages oldest first: the page reads to the end, at most
 * AUDIT_READ events, and shows them newest first, 100 at a time); new events arrive live. */
const AUDIT_READ = 20000;
export async function audit(main, route, ctx) {
  const body = h("div", { class: "list-body", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Older events");
  const info = h("span", { class: "sub" });
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Audit log"), h("p", { class: "lede" }, "Every grant, revoke, key change, config push and access failure, newest first. Never a secret."))),
    h("section", { class: "card" }, body, h("div", { class: "pager" }, info, more)),
  );
  let events = [];
  let shown = 100;
  const subjectCell = (e) => {
    const i = e.subject.indexOf(":");
    const [type, id] = i < 0 ? [e.subject, ""] : [e.subject.slice(0, i), e.subject.slice(i + 1)];
    const links = { model: "models", realm: "realms", agent: "agents" };
    if (!links[type] || !id) return h("code", {}, e.subject);
    return h("a", { href: `#/${links[type]}/${api.enc(id)}`, class: "mono", title: e.subject }, `${type}:${type === "agent" ? shortDid(id) : id.slice(0, 8)}`);
  };
  function render() {
    if (!events.length) {
      fill(body, empty("No events", "Changes appear here as they happen.", null));
      return;
    }
    const rows = events.slice(-shown).reverse();
    fill(
      body,
      table(
        "Audit log",
        [
          { label: "When", cell: (e) => time(e.at) },
          { label: "Event", cell: (e) => h("code", { class: "nowrap" }, e.kind) },
          { label: "Subject", cell: subjectCell },
          { label: "Actor", cell: (e) => e.actor },
          { label: "Details", cell: (e) => h("code", { class: "wrap sub" }, JSON.stringify(e.details)) },
        ],
        rows,
      ),
    );
    more.hidden = shown >= events.length;
    info.textContent = `${rows.length} of ${events.length} events`;
  }
  let cursor = null;
  do {
    const page = await api.get(api.withQuery("/api/audit", { limit: 1000, after: cursor }));
    events.push(...page.events);
    cursor = page.events.length === 1000 ? page.next : null;
  } while (cursor && events.length < AUDIT_READ);
  if (events.length > AUDIT_READ) events = events.slice(-AUDIT_READ);
  more.addEventListener("click", () => {
    shown += 100;
    render();
  });
  render();
  // The feed carries the same events as they happen.
  const sc = live.scope();
  const paint = sc.later(render, 200);
  sc.on((ev) => {
    if (ev.kind === "reset" || ev.kind === "agent.presence" || ev.kind === "agent.acked") return;
    events.push(ev);
    shown += 1;
    paint();
  });
  return sc.stop;
}
