// Models: the registry table, Register model, a model's overview / edit / delete, and its Realm Access
// tab (one switch per realm, with the realm key's monthly budget).

import * as api from "./api.js";
import {
  h, fill, field, input, select, badge, syncBadge, providerName, PROVIDERS, time, usd,
  empty, table, formDialog, dangerButton, tabs, toast, debounce,
} from "./dom.js";
import * as live from "./live.js";

const PAGE = 100;

function statusBadge(m) {
  return m.status === "active" ? badge("active", "ok") : badge("inactive", "muted");
}

/** `#/models` */
export async function list(main, route, ctx) {
  let shown = PAGE;
  let next = null;
  const body = h("div", { class: "list-body" });
  const more = h("button", { type: "button", class: "btn", hidden: true, on: { click: () => load(shown + PAGE) } }, "Load more");
  const register = h("button", { type: "button", class: "btn btn-primary", on: { click: () => registerDialog(() => load(shown, true)) } }, "Register model");
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Models"), h("p", { class: "lede" }, "Register a model once, then grant it to realms.")), register),
    h("section", { class: "card", "aria-labelledby": "registry-title" }, h("h2", { id: "registry-title" }, "Model Registry"), body, more),
  );

  async function load(n, fresh = false) {
    const page = await api.get(api.withQuery("/api/models", { limit: Math.min(n, 1000) }), { fresh });
    shown = n;
    next = page.next;
    more.hidden = !next;
    if (!page.models.length) {
      fill(body, empty("No models yet", "Register a model to make it available to realms.", null));
      return;
    }
    fill(
      body,
      table(
        "Model Registry",
        [
          {
            label: "Name",
            cell: (m) => h("div", {}, h("a", { href: `#/models/${api.enc(m.id)}`, class: "strong" }, m.name), m.description ? h("div", { class: "sub" }, m.description) : null),
          },
          { label: "Provider", cell: (m) => providerName(m.provider) },
          { label: "Model ID", cell: (m) => h("code", {}, m.modelId) },
          { label: "Price in / out (per 1M tokens)", cell: listPrice },
          { label: "Realms", cell: (m) => String(m.realmCount), class: "num" },
          { label: "Status", cell: statusBadge },
          { label: "LiteLLM", cell: (m) => syncBadge(m.litellm) },
        ],
        page.models,
        { key: (m) => m.id },
      ),
    );
  }
  await load(shown);
  const sc = live.scope();
  const reload = sc.later(() => load(shown, true).catch(() => {}), 150);
  sc.on((ev) => {
    if (ev.kind === "reset" || ev.kind.startsWith("model.") || ev.kind === "realm.grant" || ev.kind === "realm.revoke" || ev.kind === "realm.deleted") reload();
  });
  return sc.stop;
}

// Prices are USD per token, as LiteLLM takes them; people read them per million tokens.
const PRICES = [
  ["inputCostPerToken", "Input price (USD per token)"],
  ["outputCostPerToken", "Output price (USD per token)"],
];

/** 1.5e-7 → "0.00000015": a price per token without an exponent, every digit kept (it reads back as n). */
function perToken(n) {
  const s = String(n);
  const m = s.match(/^(\d)(?:\.(\d+))?e-(\d+)$/);
  return m ? `0.${"0".repeat(Number(m[3]) - 1)}${m[1]}${m[2] || ""}` : s;
}

/** A price per token as read: "$0.20 per 1M tokens". */
function perMillion(n) {
  return `$${(n * 1e6).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 })} per 1M tokens`;
}

/** Both prices of a model for the list: "$0.20 / $0.60", or LiteLLM's default. */
function listPrice(m) {
  const one = (n) => (n === null || n === undefined ? "default" : `$${(n * 1e6).toLocaleString("en-US", { maximumFractionDigits: 6 })}`);
  if ((m.inputCostPerToken ?? null) === null && (m.outputCostPerToken ?? null) === null) return h("span", { class: "sub" }, "LiteLLM's default");
  return `${one(m.inputCostPerToken)} / ${one(m.outputCostPerToken)}`;
}

/** A model's price for the overview, or LiteLLM's default when it has none. */
function priceText(n) {
  if (n === null || n === undefined) return h("span", { class: "sub" }, "LiteLLM's default");
  return h("span", {}, perMillion(n), h("span", { class: "sub" }, ` ($${perToken(n)} per token)`));
}

function priceHint(n) {
  return n === null || !Number.isFinite(n) || n < 0
    ? "Optional. Empty: LiteLLM's own price for the model, if it knows one (often none for a self-hosted model)."
    : `${perMillion(n)}. Empty: LiteLLM's own price.`;
}

// A price input whose hint shows the price per million tokens as it is typed.
function priceField(name, label, value) {
  const control = input(name, { type: "number", min: "0", max: "1000", step: "any", inputmode: "decimal", value: value === null || value === undefined ? "" : perToken(value), placeholder: "LiteLLM's default" });
  const f = field(label, control, priceHint(value ?? null));
  const hint = f.querySelector(".hint");
  control.addEventListener("input", () => {
    hint.textContent = priceHint(control.value.trim() === "" ? null : Number(control.value));
  });
  return f;
}

/**
 * A price field's value: null when empty. Text the browser cannot read as a number would read as empty
 * (and clear the price): it is refused here, in the API's words, next to the field.
 */
function priceValue(f, name) {
  const c = f[name].control;
  if (c.validity.badInput) throw new Error(`${name} must be a number >= 0`);
  const t = c.value.trim();
  return t === "" ? null : Number(t);
}

function modelFields(m) {
  const isNew = !m;
  const f = {
    name: field("Name", input("name", { required: true, value: m?.name || "", maxlength: 200 })),
    description: field("Description", h("textarea", { name: "description", rows: 2, maxlength: 2000 }, m?.description || "")),
    provider: field("Provider", select("provider", PROVIDERS, m?.provider || "openai-compatible"), isNew ? null : "The provider cannot be changed."),
    modelId: field("Model ID", input("modelId", { required: true, value: m?.modelId || "", placeholder: "llama3-8b" }), "The upstream's model identifier."),
    baseUrl: field("Base URL", input("baseUrl", { type: "url", value: m?.baseUrl || "", placeholder: "http://vllm:8000/v1" }), "Required for OpenAI-compatible / vLLM and Ollama."),
    apiKey: field(
      "API key",
      input("apiKey", { type: "password", autocomplete: "new-password" }),
      isNew ? "Optional. Stored encrypted; never shown again." : `Currently ${m.hasApiKey ? "set" : "not set"}. Leave empty to keep it.`,
    ),
  };
  for (const [name, label] of PRICES) f[name] = priceField(name, label, m?.[name]);
  if (!isNew) f.provider.control.disabled = true;
  return f;
}

function registerDialog(done) {
  const f = modelFields(null);
  formDialog({
    title: "Register model",
    fields: f,
    submitLabel: "Register model",
    aliases: { litellmModelName: "name" },
    submit: async () => {
      const v = (k) => f[k].control.value.trim();
      const body = { name: v("name"), provider: v("provider"), modelId: v("modelId") };
      if (v("description")) body.description = v("description");
      if (v("baseUrl")) body.baseUrl = v("baseUrl");
      if (f.apiKey.control.value) body.apiKey = f.apiKey.control.value;
      for (const [name] of PRICES) {
        const p = priceValue(f, name);
        if (p !== null) body[name] = p;
      }
      const r = await api.post("/api/models", body);
      toast(`Model "${r.model.name}" registered.`);
      done(r.model);
    },
  });
}

function editDialog(model, done) {
  const f = modelFields(model);
  const status = field("Status", select("status", [["active", "Active"], ["inactive", "Inactive"]], model.status), "Inactive models leave every realm key.");
  const clear = h("input", { type: "checkbox", name: "clearApiKey", id: "clear-api-key" });
  formDialog({
    title: `Edit ${model.name}`,
    fields: { ...f, status },
    body: [
      f.name, f.description, status, f.provider, f.modelId, f.baseUrl, f.apiKey,
      model.hasApiKey ? h("div", { class: "check" }, clear, h("label", { for: "clear-api-key" }, "Remove the stored API key")) : null,
      f.inputCostPerToken, f.outputCostPerToken,
    ],
    submitLabel: "Save",
    aliases: { litellmModelName: "name" },
    submit: async () => {
      const body = {};
      const v = (k) => f[k].control.value.trim();
      if (v("name") !== model.name) body.name = v("name");
      if (v("description") !== (model.description || "")) body.description = v("description") || null;
      if (v("modelId") !== model.modelId) body.modelId = v("modelId");
      if (v("baseUrl") !== (model.baseUrl || "")) body.baseUrl = v("baseUrl") || null;
      if (status.control.value !== model.status) body.status = status.control.value;
      if (clear.checked) body.apiKey = null;
      else if (f.apiKey.control.value) body.apiKey = f.apiKey.control.value;
      // An emptied price is sent as null: back to LiteLLM's own.
      for (const [name] of PRICES) {
        const p = priceValue(f, name);
        if (p !== (model[name] ?? null)) body[name] = p;
      }
      if (!Object.keys(body).length) return;
      await api.put(`/api/models/${api.enc(model.id)}`, body);
      toast("Model saved.");
      done();
    },
  });
}

function dl(rows) {
  return h("dl", { class: "props" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** `#/models/<id>?tab=overview|access` */
export async function detail(main, route, ctx) {
  const id = route.id;
  let tab = route.query.get("tab") === "access" ? "access" : "overview";
  let model = null;
  const head = h("div", { class: "page-head" });
  const bar = h("div");
  const panel = h("div", { role: "tabpanel", class: "tabpanel" });
  fill(main, h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models")), head, bar, panel);
  let stopAccess = null;

  async function load(fresh = false) {
    const r = await api.get(`/api/models/${api.enc(id)}`, { fresh });
    model = r.model;
    const edit = h("button", { type: "button", class: "btn", on: { click: () => editDialog(model, () => load(true)) } }, "Edit");
    const remove = dangerButton(
      "Delete",
      {
        title: `Delete ${model.name}?`,
        text: `It leaves every realm key (${model.realmCount} realm${model.realmCount === 1 ? "" : "s"}) and its deployment is removed from LiteLLM. Agents routed to it fall back to another model of their realm.`,
      },
      async () => {
        await api.del(`/api/models/${api.enc(id)}`);
        toast(`Model "${model.name}" deleted.`);
        ctx.go("models");
      },
    );
    fill(head, h("div", {}, h("h1", {}, model.name), h("p", { class: "lede" }, h("code", {}, model.litellmModelName), " ", statusBadge(model))), h("div", { class: "actions" }, edit, remove));
    renderTab();
  }

  function renderTab() {
    fill(bar, tabs("Model", [{ id: "overview", label: "Overview" }, { id: "access", label: "Realm Access" }], tab, selectTab));
    panel.id = `panel-${tab}`;
    panel.setAttribute("aria-labelledby", `tab-${tab}`);
    if (stopAccess) stopAccess();
    stopAccess = null;
    if (tab === "overview") {
      fill(
        panel,
        h(
          "section",
          { class: "card" },
          h("h2", {}, "Overview"),
          dl([
            ["Description", model.description || "—"],
            ["Provider", providerName(model.provider)],
            ["Model ID", h("code", {}, model.modelId)],
            ["Base URL", model.baseUrl ? h("code", {}, model.baseUrl) : "—"],
            ["API key", model.hasApiKey ? badge("set", "ok") : badge("not set", "muted")],
            ["Input price", priceText(model.inputCostPerToken)],
            ["Output price", priceText(model.outputCostPerToken)],
            ["LiteLLM name", h("code", {}, model.litellmModelName)],
            ["LiteLLM sync", h("span", {}, syncBadge(model.litellm), model.litellm?.lastError ? h("span", { class: "sub" }, ` ${model.litellm.lastError}`) : null)],
            ["Realms", String(model.realmCount)],
            ["Created", time(model.createdAt)],
            ["Updated", time(model.updatedAt)],
          ]),
        ),
      );
    } else {
      stopAccess = access(panel, model);
    }
  }

  function selectTab(t) {
    tab = t;
    ctx.replaceQuery(t === "overview" ? {} : { tab: t });
    renderTab();
    document.getElementById(`tab-${t}`)?.focus();
  }

  await load();
  const sc = live.scope();
  const reload = sc.later(() => load(true).catch((e) => e.status === 404 && fill(head, h("h1", {}, "Model deleted"))), 150);
  sc.on((ev) => {
    const s = live.subjectOf(ev);
    if (ev.kind === "reset" || (s.type === "model" && s.id === id) || ((ev.kind === "realm.grant" || ev.kind === "realm.revoke") && ev.details?.modelId === id)) reload();
  });
  return () => {
    sc.stop();
    if (stopAccess) stopAccess();
  };
}

// The Realm Access tab: every realm with a switch; the budget is the realm key's (shared by its models).
function access(panel, model) {
  const filter = input("realm-filter", { type: "search", placeholder: "Filter realms" });
  const list = h("div", { class: "access-list" });
  const note = h("p", { class: "hint" }, "A grant adds this model to the realm's LiteLLM key; every agent routed through the realm can use it. The monthly budget belongs to the realm's key and covers all of its models.");
  fill(panel, h("section", { class: "card" }, h("h2", {}, "Realm Access"), note, field("Filter realms", filter), list));
  let realms = [];
  let granted = new Set();
  const busy = new Set();
  const errors = new Map();
  const sc = live.scope();

  async function load() {
    const [rs, gs] = await Promise.all([api.all("/api/realms", "realms"), api.all(`/api/models/${api.enc(model.id)}/realms`, "realms")]);
    if (sc.stopped) return;
    realms = rs;
    granted = new Set(gs.map((g) => g.realmId));
    render();
  }

  function render() {
    const q = filter.value.trim().toLowerCase();
    const shown = realms.filter((r) => !q || r.name.toLowerCase().includes(q) || r.slug.includes(q));
    if (!realms.length) {
      fill(list, empty("No realms yet", "Create a realm first, then grant this model to it.", h("a", { href: "#/realms", class: "btn" }, "Go to Realms")));
      return;
    }
    // A re-render keeps the keyboard focus where it was (a switch, a budget field).
    const focused = document.activeElement?.id;
    fill(list, shown.map(row));
    if (focused && list.querySelector(`[id="${focused}"]`)) document.getElementById(focused).focus();
  }

  function row(realm) {
    const on = granted.has(realm.id);
    const sw = h("input", {
      type: "checkbox",
      role: "switch",
      class: "switch",
      id: `grant-${realm.id}`,
      checked: on,
      disabled: busy.has(realm.id) || model.status !== "active",
      "aria-describedby": `grant-${realm.id}-state`,
    });
    const budget = h("input", {
      type: "number",
      min: "0",
      step: "0.01",
      inputmode: "decimal",
      id: `budget-${realm.id}`,
      name: "monthlyBudgetUsd",
      value: realm.routerKey?.monthlyBudgetUsd ?? "",
      placeholder: "none",
    });
    const err = h("p", { class: "field-error", role: "alert", hidden: !errors.has(realm.id) }, errors.get(realm.id) || "");
    const save = h("button", { type: "button", class: "btn btn-small", hidden: !on, disabled: busy.has(realm.id) }, "Save budget");
    const state = h("span", { class: "sub", id: `grant-${realm.id}-state` }, on ? `Granted · ${usd(realm.routerKey?.monthlyBudgetUsd)}` : "Not granted");
    const budgetValue = () => {
      const t = budget.value.trim();
      return t === "" ? null : Number(t);
    };
    async function act(f) {
      busy.add(realm.id);
      errors.delete(realm.id);
      render();
      try {
        await f();
      } catch (e) {
        errors.set(realm.id, `${e.message} (${e.status})`);
      }
      busy.delete(realm.id);
      await load().catch(() => render());
    }
    sw.addEventListener("change", () =>
      act(async () => {
        if (sw.checked) {
          const b = budgetValue();
          await api.post(`/api/models/${api.enc(model.id)}/realms`, b === null ? { realmId: realm.id } : { realmId: realm.id, monthlyBudgetUsd: b });
          toast(`Granted to ${realm.name}.`);
        } else {
          await api.del(`/api/models/${api.enc(model.id)}/realms/${api.enc(realm.id)}`);
          toast(`Revoked from ${realm.name}.`);
        }
      }),
    );
    save.addEventListener("click", () =>
      act(async () => {
        await api.post(`/api/models/${api.enc(model.id)}/realms`, { realmId: realm.id, monthlyBudgetUsd: budgetValue() });
        toast(`Budget of ${realm.name} saved.`);
      }),
    );
    const dot = h("span", { class: "dot", "aria-hidden": "true" });
    if (realm.color) dot.style.background = realm.color;
    return h(
      "div",
      { class: "access-row", dataset: { realm: realm.id } },
      h("div", { class: "access-name" }, sw, h("label", { for: sw.id }, dot, realm.name), state),
      h("div", { class: "access-budget" }, h("label", { for: budget.id }, "Monthly budget (USD)"), budget, save),
      err,
    );
  }

  filter.addEventListener("input", debounce(render, 100));
  load().catch((e) => fill(list, h("p", { class: "form-error", role: "alert" }, e.message)));
  const reload = sc.later(() => {
    if (!busy.size) load().catch(() => {});
  }, 150);
  sc.on((ev) => {
    if (ev.kind === "reset" || ev.kind.startsWith("realm.")) reload();
  });
  return sc.stop;
}
