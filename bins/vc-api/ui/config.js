// An agent's Config tab: what it holds (the violet Realm Routing banner, delivered or not) and the
// modes to change it: Realm Routing, From Registry, Configure manually, Clear. Keys are never shown:
// the API returns none.

import * as api from "./api.js";
import { h, fill, field, input, select, badge, providerName, PROVIDERS, showFormError, confirmDialog, toast, uid } from "./dom.js";
import * as live from "./live.js";

const MODES = [
  ["realm", "Realm Routing", "Through one of the agent's realms: the LiteLLM proxy and the realm's key."],
  ["registry", "From Registry", "Straight to a registered model's upstream, with its stored key."],
  ["manual", "Configure manually", "A provider, model and key of your own."],
];

/** Renders the tab into `panel`; returns {stop, agentChanged(), routingChanged(ev)}. */
export function configTab(panel, did, getAgent, ctx) {
  const admin = ctx.session.admin;
  const current = h("section", { class: "card", "aria-labelledby": "current-title" });
  const editor = h("section", { class: "card", "aria-labelledby": "change-title" });
  fill(panel, current, editor);
  let cfg = null; // GET …/llm-config
  let routing = null; // GET …/realm-llm
  let registry = null; // active models (admins)
  let mode = null;
  let dirty = false;
  const sc = live.scope();
  const path = `/api/agents/${api.enc(did)}`;

  // The model of the realm-llm answer with this LiteLLM name, and its realm.
  function lookup(realmId, litellmName) {
    const realm = routing?.realms.find((r) => r.realmId === realmId);
    const model = realm?.models.find((m) => m.litellmModelName === litellmName);
    return { realm, model };
  }

  function delivery() {
    const agent = getAgent();
    const acked = cfg.ackedVersion ?? agent.ackedVersion;
    if (!cfg.version) return h("p", { class: "delivery" }, "Nothing has been sent to this agent yet.");
    if (acked !== null && acked !== undefined && acked >= cfg.version) {
      return h("p", { class: "delivery" }, badge("delivered", "ok"), ` Version ${cfg.version} is acknowledged by the agent.`);
    }
    if (agent.online) return h("p", { class: "delivery" }, badge("sent", "warn"), ` Version ${cfg.version} sent; waiting for the agent's acknowledgement.`);
    return h("p", { class: "delivery" }, badge("saved, agent offline", "muted"), ` Version ${cfg.version} is saved; the agent receives it when it connects.`);
  }

  function renderCurrent() {
    const c = cfg.config;
    let banner;
    if (c && cfg.mode === "realm") {
      const { realm, model } = lookup(cfg.realmId, c.model);
      const realmName = realm?.realmName || cfg.realmId;
      banner = h(
        "div",
        { class: "banner banner-realm", role: "note", "aria-label": "Realm Routing" },
        h("span", { class: "banner-kind" }, "Realm Routing"),
        h("span", { class: "banner-main" }, h("strong", {}, model?.name || c.model), ` via ${realmName}`),
        h("span", { class: "pills" }, model ? h("span", { class: "pill" }, providerName(model.provider)) : null, h("code", {}, c.model)),
      );
    } else if (c && cfg.mode === "registry") {
      banner = h("div", { class: "banner banner-registry", role: "note" }, h("span", { class: "banner-kind" }, "From Registry"), h("span", { class: "banner-main" }, h("strong", {}, c.model), ` · ${providerName(c.provider)}`));
    } else if (c) {
      banner = h("div", { class: "banner banner-manual", role: "note" }, h("span", { class: "banner-kind" }, "Manual"), h("span", { class: "banner-main" }, h("strong", {}, c.model), ` · ${providerName(c.provider)}`));
    } else {
      banner = h("div", { class: "banner banner-none", role: "note" }, h("span", { class: "banner-kind" }, "No config"), h("span", { class: "banner-main" }, "The agent falls back to its local environment."));
    }
    const props = c
      ? h(
          "dl",
          { class: "props" },
          [
            ["Provider", providerName(c.provider)],
            ["Model", h("code", {}, c.model)],
            ["Base URL", c.baseUrl ? h("code", {}, c.baseUrl) : "—"],
            ["API key", c.apiKeySet ? "set (never shown)" : "none"],
            ["Allowed models", c.allowedModels?.length ? h("span", { class: "pills" }, c.allowedModels.map((m) => h("code", {}, m))) : "—"],
            c.systemPrompt ? ["System prompt", c.systemPrompt] : null,
            c.maxTokens ? ["Max tokens", String(c.maxTokens)] : null,
          ]
            .filter(Boolean)
            .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        )
      : null;
    fill(current, h("h2", { id: "current-title" }, "Current config"), banner, h("div", { class: "delivery-wrap", role: "status", "aria-live": "polite" }, delivery()), props);
  }

  function realmForm() {
    const err = h("p", { class: "form-error", role: "alert", hidden: true });
    if (!routing.realms.length) {
      return h("p", { class: "hint" }, "The agent is a member of no realm. Add it to a realm on the realm's page.");
    }
    const realmName = uid("realm");
    const modelName = uid("model");
    let realmId = (cfg.mode === "realm" && cfg.realmId) || routing.realms[0].realmId;
    const models = h("div", { class: "radio-list" });
    const modelSet = h("fieldset", { class: "radios" }, h("legend", {}, "Model"), models);
    const realms = h(
      "fieldset",
      { class: "radios" },
      h("legend", {}, "Realm"),
      routing.realms.map((r) => {
        const id = uid("r");
        const radio = h("input", { type: "radio", name: realmName, id, value: r.realmId, checked: r.realmId === realmId });
        radio.addEventListener("change", () => {
          realmId = r.realmId;
          dirty = true;
          renderModels();
        });
        return h(
          "div",
          { class: "radio" },
          radio,
          h("label", { for: id }, r.realmName, r.isPrimary ? h("span", { class: "pill pill-primary" }, "Primary") : null, r.hasVirtualKey ? null : h("span", { class: "pill pill-warn" }, "no virtual key")),
        );
      }),
    );
    function renderModels() {
      const realm = routing.realms.find((r) => r.realmId === realmId);
      const chosen = cfg.mode === "realm" && cfg.realmId === realmId ? cfg.config?.model : null;
      if (!realm.models.length) {
        fill(models, h("p", { class: "hint" }, "No active model is granted to this realm."));
        return;
      }
      fill(
        models,
        realm.models.map((m, i) => {
          const id = uid("m");
          const radio = h("input", { type: "radio", name: modelName, id, value: m.id, checked: chosen ? m.litellmModelName === chosen : i === 0 });
          radio.addEventListener("change", () => (dirty = true));
          return h(
            "div",
            { class: "radio" },
            radio,
            h("label", { for: id }, m.name, h("span", { class: "pill" }, providerName(m.provider)), h("code", { class: "sub" }, m.litellmModelName)),
          );
        }),
      );
    }
    renderModels();
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Save Realm Routing");
    const form = h("form", { class: "mode-form", "aria-label": "Realm Routing" }, routing.litellmConfigured ? null : h("p", { class: "hint warn" }, "LiteLLM is not configured on this control plane: realms have no virtual keys."), realms, modelSet, err, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const picked = models.querySelector("input:checked");
      if (!picked) {
        err.textContent = "Choose a model.";
        err.hidden = false;
        return;
      }
      save({ realmId, realmModelId: picked.value }, {}, err, submit);
    });
    return form;
  }

  function registryForm() {
    const err = h("p", { class: "form-error", role: "alert", hidden: true });
    if (!registry.length) return h("p", { class: "hint" }, "No active model in the registry.");
    const model = field("Model", select("registryModelId", registry.map((m) => [m.id, `${m.name} (${providerName(m.provider)})`]), cfg.mode === "registry" ? undefined : undefined));
    model.control.addEventListener("change", () => (dirty = true));
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Save");
    const form = h("form", { class: "mode-form", "aria-label": "From Registry" }, model, err, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      save({ registryModelId: model.control.value }, { registryModelId: model }, err, submit);
    });
    return form;
  }

  function manualForm() {
    const err = h("p", { class: "form-error", role: "alert", hidden: true });
    const f = {
      provider: field("Provider", select("provider", PROVIDERS, "openai-compatible")),
      model: field("Model", input("model", { required: true })),
      baseUrl: field("Base URL", input("baseUrl", { type: "url", placeholder: "https://…/v1" })),
      apiKey: field("API key", input("apiKey", { type: "password", autocomplete: "new-password" }), "Sent to the agent only; never shown here."),
      systemPrompt: field("System prompt", h("textarea", { name: "systemPrompt", rows: 3 })),
      maxTokens: field("Max tokens", input("maxTokens", { type: "number", min: "1", step: "1", inputmode: "numeric" })),
    };
    for (const x of Object.values(f)) x.control.addEventListener("input", () => (dirty = true));
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Save manual config");
    const form = h("form", { class: "mode-form", "aria-label": "Configure manually", novalidate: true }, Object.values(f), err, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = (k) => f[k].control.value.trim();
      const body = { provider: v("provider"), model: v("model") };
      if (v("baseUrl")) body.baseUrl = v("baseUrl");
      if (f.apiKey.control.value) body.apiKey = f.apiKey.control.value;
      if (v("systemPrompt")) body.systemPrompt = v("systemPrompt");
      if (v("maxTokens")) body.maxTokens = Number(v("maxTokens"));
      save(body, f, err, submit);
    });
    return form;
  }

  async function save(body, fields, err, button) {
    button.disabled = true;
    err.hidden = true;
    try {
      const r = await api.put(`${path}/llm-config`, body);
      dirty = false;
      toast(`Config saved as version ${r.version}${r.pushed ? ", sent to the agent" : ""}.`);
      await load();
    } catch (e) {
      showFormError(e, fields, err);
    } finally {
      button.disabled = false;
    }
  }

  function renderEditor() {
    const available = MODES.filter(([m]) => admin || m === "realm");
    if (!mode) mode = available.some(([m]) => m === cfg.mode) ? cfg.mode : "realm";
    const group = uid("mode");
    const choice = h(
      "fieldset",
      { class: "modes" },
      h("legend", {}, "Mode"),
      available.map(([m, label, hint]) => {
        const id = uid("mode");
        const radio = h("input", { type: "radio", name: group, id, value: m, checked: m === mode });
        radio.addEventListener("change", () => {
          mode = m;
          renderEditor();
          document.getElementById(id)?.focus();
        });
        return h("div", { class: "mode" }, radio, h("label", { for: id }, h("span", { class: "strong" }, label), h("span", { class: "sub" }, hint)));
      }),
    );
    const form = mode === "realm" ? realmForm() : mode === "registry" ? registryForm() : manualForm();
    const clear = h(
      "button",
      {
        type: "button",
        class: "btn btn-danger-outline",
        disabled: !cfg.config,
        on: {
          click: async () => {
            if (!(await confirmDialog("Clear the config?", "The agent receives an empty config and falls back to its local environment.", "Clear"))) return;
            try {
              await api.del(`${path}/llm-config`);
              toast("Config cleared.");
              await load();
            } catch (e) {
              toast(`Clear failed: ${e.message}`, "err");
            }
          },
        },
      },
      "Clear",
    );
    fill(editor, h("div", { class: "card-head" }, h("h2", { id: "change-title" }, "Change config"), admin || cfg.mode === "realm" ? clear : null), choice, form);
  }

  async function load() {
    const [c, r, reg] = await Promise.all([
      api.get(`${path}/llm-config`),
      api.get(`${path}/realm-llm`),
      admin && registry === null ? api.all("/api/models", "models", { status: "active" }) : Promise.resolve(registry),
    ]);
    if (sc.stopped) return;
    cfg = c;
    routing = r;
    registry = reg || [];
    renderCurrent();
    if (!dirty) renderEditor();
  }

  load().catch((e) => fill(current, h("p", { class: "form-error", role: "alert" }, e.message)));
  const reload = sc.later(() => load().catch(() => {}), 150);
  return {
    stop: sc.stop,
    // Presence or an ack changed: the delivery line follows without a request.
    agentChanged: () => {
      if (cfg) renderCurrent();
      reload();
    },
    routingChanged: (ev) => {
      if (ev.kind.startsWith("model.")) registry = null;
      reload();
    },
  };
}
