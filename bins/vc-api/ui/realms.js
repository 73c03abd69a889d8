// Realms: the list (search, create), and a realm's page: its router key, its models, its agents (paged)
// with add / remove, edit and delete.

import * as api from "./api.js";
import {
  h, fill, field, input, badge, syncBadge, providerName, usd, time, empty, table, formDialog,
  dangerButton, toast,
} from "./dom.js";
import * as live from "./live.js";
import { pagedAgents } from "./agents.js";

function dot(color) {
  const d = h("span", { class: "dot", "aria-hidden": "true" });
  if (color) d.style.background = color;
  return d;
}

function keyBadge(realm) {
  return realm.routerKey?.hasVirtualKey ? badge("Active", "ok") : badge("Not configured", "muted");
}

/** `#/realms?q=` */
export async function list(main, route, ctx) {
  const admin = ctx.session.admin;
  const q = input("q", { type: "search", value: route.query.get("q") || "", placeholder: "Name or slug" });
  const body = h("div", { class: "list-body" });
  const more = h("button", { type: "button", class: "btn", hidden: true }, "Load more");
  const create = admin ? h("button", { type: "button", class: "btn btn-primary", on: { click: () => realmDialog(null, (r) => ctx.go("realms", r.id)) } }, "Create realm") : null;
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Realms"), h("p", { class: "lede" }, "Teams of agents. Each realm has one LiteLLM key scoped to its models.")), create),
    h("section", { class: "card" }, h("form", { class: "filters", role: "search", "aria-label": "Filter realms", on: { submit: (e) => e.preventDefault() } }, field("Search", q)), body, more),
  );
  let items = [];
  let next = null;
  async function load(fresh = false, append = false) {
    const page = await api.get(api.withQuery("/api/realms", { q: q.value.trim(), limit: 100, cursor: append ? next : null }), { fresh });
    items = append ? items.concat(page.realms) : page.realms;
    next = page.next;
    more.hidden = !next;
    if (!items.length) {
      fill(body, empty(q.value ? "No realm matches" : "No realms yet", q.value ? "Try another name." : "Create a realm, then grant models to it.", null));
      return;
    }
    fill(
      body,
      table(
        "Realms",
        [
          { label: "Name", cell: (r) => h("div", {}, h("a", { href: `#/realms/${api.enc(r.id)}`, class: "strong" }, dot(r.color), r.name), h("div", { class: "sub" }, r.slug)) },
          { label: "Agents", cell: (r) => String(r.agentCount), class: "num" },
          { label: "Models", cell: (r) => String(r.modelCount), class: "num" },
          { label: "Router key", cell: keyBadge },
          { label: "Budget", cell: (r) => (r.routerKey ? usd(r.routerKey.monthlyBudgetUsd) : "—") },
        ],
        items,
        { key: (r) => r.id },
      ),
    );
  }
  more.addEventListener("click", () => load(false, true));
  const sc = live.scope();
  q.addEventListener(
    "input",
    sc.later(() => {
      ctx.replaceQuery(q.value.trim() ? { q: q.value.trim() } : {});
      load();
    }, 200),
  );
  await load();
  const reload = sc.later(() => load(true).catch(() => {}), 300);
  sc.on((ev) => {
    if (ev.kind === "reset" || ev.kind.startsWith("realm.")) reload();
  });
  return sc.stop;
}

function realmDialog(realm, done) {
  const f = {
    name: field("Name", input("name", { required: true, value: realm?.name || "", maxlength: 200 })),
    slug: field("Slug", input("slug", { value: realm?.slug || "", placeholder: "from the name" }), "Lower-case letters, digits and dashes; unique."),
    description: field("Description", h("textarea", { name: "description", rows: 2 }, realm?.description || "")),
    color: field("Colour", input("color", { type: "color", value: realm?.color || "#6366f1" })),
  };
  // Request limits of the realm's LiteLLM key and team (edit only; empty = no limit).
  const limitField = (name, label, hint) =>
    field(label, input(name, { type: "number", min: "1", step: "1", value: realm?.limits?.[name] ?? "", placeholder: "no limit" }), hint);
  if (realm) {
    f.rpmLimit = limitField("rpmLimit", "Requests per minute", "For all of the realm's agents together (LiteLLM answers 429 above it).");
    f.tpmLimit = limitField("tpmLimit", "Tokens per minute");
    f.maxParallelRequests = limitField("maxParallelRequests", "Requests in flight at once");
  }
  formDialog({
    title: realm ? `Edit ${realm.name}` : "Create realm",
    fields: f,
    submitLabel: realm ? "Save" : "Create realm",
    submit: async () => {
      const v = (k) => f[k].control.value.trim();
      const body = { name: v("name"), color: v("color") };
      if (v("slug")) body.slug = v("slug");
      if (v("description") || realm?.description) body.description = v("description") || null;
      for (const k of ["rpmLimit", "tpmLimit", "maxParallelRequests"]) {
        if (!f[k]) continue;
        const next = v(k) === "" ? null : Number(v(k));
        if (next !== (realm.limits?.[k] ?? null)) body[k] = next;
      }
      const r = realm ? await api.patch(`/api/realms/${api.enc(realm.id)}`, body) : await api.post("/api/realms", body);
      toast(realm ? "Realm saved." : `Realm "${r.realm.name}" created.`);
      done(r.realm);
    },
  });
}

function addAgentDialog(realm, done) {
  const did = field("Agent DID", input("agentDid", { required: true, placeholder: "did:key:z6Mk…", class: "mono" }));
  const primary = h("input", { type: "checkbox", id: "add-primary", name: "isPrimary" });
  formDialog({
    title: `Add an agent to ${realm.name}`,
    fields: { agentDid: did },
    body: [did, h("div", { class: "check" }, primary, h("label", { for: "add-primary" }, "Primary realm of this agent"))],
    submitLabel: "Add agent",
    submit: async () => {
      const r = await api.post(`/api/realms/${api.enc(realm.id)}/agents`, { agentDid: did.control.value.trim(), isPrimary: primary.checked });
      toast(r.llmPushed ? "Agent added and configured through the realm." : "Agent added.");
      done();
    },
  });
}

function rotateKeyDialog(realm, done) {
  const grace = field(
    "Grace period (seconds)",
    input("graceSeconds", { type: "number", min: "0", max: "604800", step: "1", placeholder: "server default (30)" }),
    "How long the current key keeps working after the members were sent the new one (earlier once every online member has acknowledged it). 0 = retire it at once, for a leaked key.",
  );
  formDialog({
    title: `Rotate the key of ${realm.name}`,
    fields: { graceSeconds: grace },
    submitLabel: "Rotate key",
    danger: true,
    submit: async () => {
      const raw = grace.control.value.trim();
      const body = raw === "" ? {} : { graceSeconds: Number(raw) };
      await api.post(`/api/realms/${api.enc(realm.id)}/key/rotate`, body);
      toast("Key rotation started: the members are sent the new key once LiteLLM holds it.");
      done();
    },
  });
}

/** `limits` in words. */
function limitsCell(l) {
  const parts = [];
  if (l?.rpmLimit) parts.push(`${l.rpmLimit} requests/min`);
  if (l?.tpmLimit) parts.push(`${l.tpmLimit} tokens/min`);
  if (l?.maxParallelRequests) parts.push(`${l.maxParallelRequests} in flight`);
  return parts.length ? parts.join(" · ") : "none";
}

/** Spend against budget: a bar, the figures, thresholds crossed, the guard, and Refresh. */
function spendCard(card, realmId, sp, refresh) {
  const budget = sp.budgetUsd;
  const pct = budget ? Math.min(100, (100 * sp.spendUsd) / budget) : 0;
  const tone = sp.guard || pct >= 100 ? "err" : pct >= 80 ? "warn" : "ok";
  const bar = h(
    "div",
    { class: `meter meter-${tone}`, role: "meter", "aria-label": "Spend against the monthly budget", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(pct)) },
    h("span", { class: "meter-fill" }),
  );
  bar.firstChild.style.width = `${pct}%`;
  const money = (n) => `$${Number(n).toFixed(n > 0 && n < 0.01 ? 6 : 2)}`;
  const refreshBtn = h(
    "button",
    {
      type: "button",
      class: "btn",
      on: {
        click: async (e) => {
          e.target.disabled = true;
          try {
            await api.post(`/api/realms/${api.enc(realmId)}/spend/refresh`, {});
            await refresh();
          } catch (err) {
            toast(`Refresh failed: ${err.message}`, "err");
          } finally {
            e.target.disabled = false;
          }
        },
      },
    },
    "Refresh",
  );
  fill(
    card,
    h("div", { class: "card-head" }, h("h2", { id: "spend-title" }, "Spend this month"), refreshBtn),
    budget !== null && budget !== undefined ? bar : null,
    h(
      "dl",
      { class: "props" },
      [
        ["Spent", money(sp.spendUsd)],
        ["Budget", budget === null || budget === undefined ? "no budget" : `${money(budget)} (${money(sp.remainingUsd)} left)`],
        ["Thresholds crossed", sp.thresholdsCrossed.length ? h("span", { class: "pills" }, sp.thresholdsCrossed.map((t) => badge(`${Math.round(t * 100)} %`, t >= 1 ? "err" : "warn"))) : "none"],
        ["Period resets", sp.periodResetAt ? time(sp.periodResetAt) : "—"],
        ["Read from LiteLLM", sp.readAt ? time(sp.readAt) : "not yet"],
      ].map(([a, b]) => [h("dt", {}, a), h("dd", {}, b)]),
    ),
    sp.guard ? h("p", { class: "banner banner-err", role: "status" }, `The key is blocked: ${sp.guard.reason}. It is unblocked at the next period or when the budget is raised above the spend.`) : null,
  );
}

/** `routerKey.rotation` as a badge and a line of detail. */
function rotationCell(rot) {
  if (!rot) return "—";
  const tone = { stable: "ok", pending: "warn", retiring: "warn" }[rot.state] || "muted";
  const parts = [];
  if (rot.state === "pending" && rot.pending) parts.push(` new key ${rot.pending.keyPrefix}… being created in LiteLLM`);
  for (const r of rot.retiring || []) parts.push(` ${r.keyPrefix}… works until ${new Date(r.retireAt).toLocaleTimeString()} at the latest`);
  if (rot.state === "stable") parts.push(rot.rotations ? ` rotated ${rot.rotations}×, last ${new Date(rot.rotatedAt).toLocaleString()}` : " never rotated");
  return h("span", {}, badge(rot.state, tone), h("span", { class: "sub" }, parts.join(";")));
}

function removeAgentDialog(realm, done) {
  const did = field("Agent DID", input("agentDid", { required: true, class: "mono" }));
  formDialog({
    title: `Remove an agent from ${realm.name}`,
    fields: { agentDid: did },
    submitLabel: "Remove agent",
    danger: true,
    submit: async () => {
      await api.del(`/api/realms/${api.enc(realm.id)}/agents/${api.enc(did.control.value.trim())}`);
      toast("Agent removed from the realm.");
      done();
    },
  });
}

/** `#/realms/<id>` */
export async function detail(main, route, ctx) {
  const id = route.id;
  const admin = ctx.session.admin;
  const head = h("div", { class: "page-head" });
  const keyCard = h("section", { class: "card", "aria-labelledby": "key-title" });
  const modelsCard = h("section", { class: "card", "aria-labelledby": "models-title" });
  const spendCardEl = h("section", { class: "card", "aria-labelledby": "spend-title" });
  const agents = pagedAgents(`/api/realms/${api.enc(id)}/agents`, () => ({}), { caption: "Agents of the realm", emptyText: "No agent is a member of this realm." });
  let realm = null;
  const addBtn = h("button", { type: "button", class: "btn", on: { click: () => addAgentDialog(realm, () => agents.load(false, true)) } }, "Add agent");
  const removeBtn = h("button", { type: "button", class: "btn", on: { click: () => removeAgentDialog(realm, () => agents.load(false, true)) } }, "Remove agent");
  const agentsCard = h(
    "section",
    { class: "card", "aria-labelledby": "agents-title" },
    h("div", { class: "card-head" }, h("h2", { id: "agents-title" }, "Agents"), h("div", { class: "actions" }, addBtn, removeBtn)),
    agents.el,
  );
  fill(main, h("p", { class: "crumbs" }, h("a", { href: "#/realms" }, "Realms")), head, h("div", { class: "grid-2" }, keyCard, modelsCard), spendCardEl, agentsCard);

  async function load(fresh = false) {
    const r = await api.get(`/api/realms/${api.enc(id)}`, { fresh });
    realm = r.realm;
    const edit = admin ? h("button", { type: "button", class: "btn", on: { click: () => realmDialog(realm, () => load(true)) } }, "Edit") : null;
    const remove = admin
      ? dangerButton(
          "Delete",
          { title: `Delete ${realm.name}?`, text: `Its LiteLLM key is deleted; the ${realm.agentCount} agent(s) routed through it get an empty config.` },
          async () => {
            await api.del(`/api/realms/${api.enc(id)}`);
            toast(`Realm "${realm.name}" deleted.`);
            ctx.go("realms");
          },
        )
      : null;
    fill(
      head,
      h("div", {}, h("h1", {}, dot(realm.color), realm.name), h("p", { class: "lede" }, realm.description || h("span", { class: "sub" }, realm.slug))),
      h("div", { class: "actions" }, edit, remove),
    );
    spendCardEl.hidden = !realm.routerKey;
    if (realm.routerKey && r.spend) spendCard(spendCardEl, id, r.spend, () => load(true));
    const k = realm.routerKey;
    const rotate = k ? h("button", { type: "button", class: "btn", on: { click: () => rotateKeyDialog(realm, () => load(true)) } }, "Rotate key") : null;
    fill(
      keyCard,
      h("div", { class: "card-head" }, h("h2", { id: "key-title" }, "Router key"), h("div", { class: "actions" }, keyBadge(realm), rotate)),
      k
        ? h(
            "dl",
            { class: "props" },
            [
              ["Key prefix", h("code", {}, `${k.keyPrefix || ""}…`)],
              ["Allowed models", k.allowedModels.length ? h("span", { class: "pills" }, k.allowedModels.map((m) => h("code", {}, m))) : "none"],
              ["Monthly budget", usd(k.monthlyBudgetUsd)],
              ["Limits", limitsCell(k.limits)],
              ["Rotation", rotationCell(k.rotation)],
              ["LiteLLM sync", h("span", {}, syncBadge(k.litellm), k.litellm?.lastError ? h("span", { class: "sub" }, ` ${k.litellm.lastError}`) : null)],
              ["Updated", time(k.updatedAt)],
            ].map(([a, b]) => [h("dt", {}, a), h("dd", {}, b)]),
          )
        : h("p", { class: "hint" }, "No LiteLLM key yet: the first model granted to this realm mints it."),
    );
    fill(
      modelsCard,
      h("h2", { id: "models-title" }, "Models"),
      r.models.length
        ? table(
            "Models of the realm",
            [
              { label: "Model", cell: (m) => (admin ? h("a", { href: `#/models/${api.enc(m.id)}?tab=access` }, m.name) : m.name) },
              { label: "Provider", cell: (m) => providerName(m.provider) },
              { label: "LiteLLM name", cell: (m) => h("code", {}, m.litellmModelName) },
              { label: "Status", cell: (m) => (m.status === "active" ? badge("active", "ok") : badge("inactive", "muted")) },
            ],
            r.models,
          )
        : empty("No models", admin ? "Grant a model from its Realm Access tab." : "No model is granted to this realm.", admin ? h("a", { class: "btn", href: "#/models" }, "Go to Models") : null),
    );
  }

  await Promise.all([load(), agents.load(true)]);
  const sc = live.scope();
  const reload = sc.later(() => load(true).catch((e) => e.status === 404 && fill(head, h("h1", {}, "Realm deleted"))), 200);
  sc.on((ev) => {
    const s = live.subjectOf(ev);
    if (ev.kind === "reset" || (s.type === "realm" && s.id === id) || ev.kind.startsWith("model.")) reload();
  });
  return () => {
    sc.stop();
    agents.stop();
  };
}
