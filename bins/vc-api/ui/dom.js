// DOM helpers: elements are built with h(), never from HTML strings, so no value the API returns can
// become markup.

let ids = 0;
/** A fresh element id (labels and descriptions point at inputs by id). */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * h("button", {class: "btn", on: {click: f}, "aria-label": "…"}, "text", child, [more])
 * Attributes: `class`, `text`, `on` (event listeners), `dataset`, boolean properties (`checked`,
 * `disabled`, `selected`, `hidden`, `required`), `value`; the rest become attributes. Children may be
 * strings, nodes, arrays, null or false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "on") for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (["checked", "disabled", "selected", "hidden", "required", "value"].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A small coloured label. kind: ok, warn, err, muted, info, violet. */
export function badge(text, kind = "muted", title) {
  return h("span", { class: `badge badge-${kind}`, title }, text);
}

/** The LiteLLM sync state of a model or a realm key. */
export function syncBadge(litellm) {
  if (!litellm) return badge("—", "muted");
  const kind = { synced: "ok", pending: "warn", skipped: "muted", error: "err" }[litellm.state] || "muted";
  return badge(litellm.state, kind, litellm.lastError || undefined);
}

export function onlineBadge(online) {
  return online ? badge("online", "ok") : badge("offline", "muted");
}

const providers = {
  "openai-compatible": "OpenAI-compatible / vLLM",
  openai: "OpenAI",
  anthropic: "Anthropic",
  google: "Google",
  ollama: "Ollama",
};
/** Providers in the order the forms offer them (the first is the default). */
export const PROVIDERS = Object.entries(providers);
export function providerName(id) {
  return providers[id] || id;
}

export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function usd(n) {
  return n === null || n === undefined ? "no budget" : `$${Number(n).toFixed(2)} / month`;
}

/** A DID shortened for tables (the full value in the title). */
export function shortDid(did) {
  return did.length > 28 ? `${did.slice(0, 16)}…${did.slice(-8)}` : did;
}

/**
 * A labelled form field: label, control, hint and an error line the form fills from the API's answer.
 * Returns the wrapper; `wrapper.control` is the input and `wrapper.setError(text)` shows an error.
 */
export function field(label, control, hint) {
  const id = control.id || uid("f");
  control.id = id;
  const err = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  const wrap = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    err,
  );
  wrap.control = control;
  wrap.setError = (text) => {
    err.textContent = text || "";
    err.hidden = !text;
    if (text) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  };
  return wrap;
}

/** An input element. */
export function input(name, attrs = {}) {
  return h("input", { name, type: "text", autocomplete: "off", ...attrs });
}

/** A <select> of [value, label] pairs. */
export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)),
  );
}

/**
 * Shows an API error on a form: next to the field it names (the API's messages start with the field's
 * name) or, failing that, in the form's own error line.
 * fields: {apiName: fieldWrapper}; aliases map other names the API uses to one of them.
 */
export function showFormError(err, fields, formError, aliases = {}) {
  for (const f of Object.values(fields)) f.setError("");
  const first = String(err.message || "").match(/^([A-Za-z]+)/);
  const name = first ? aliases[first[1]] || first[1] : null;
  const target = name && fields[name];
  const text = err.status ? `${err.message} (${err.status})` : err.message;
  if (target) {
    target.setError(text);
    target.control.focus();
    formError.hidden = true;
  } else {
    formError.textContent = text;
    formError.hidden = false;
  }
}

/** An empty-state panel. */
export function empty(title, text, action) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), h("p", {}, text), action || null);
}

/** A table: columns [{label, cell(row) → node|string, class?}], rows. */
export function table(caption, columns, rows, opts = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: opts.class || "" },
      h("caption", { class: opts.showCaption ? "" : "sr-only" }, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            { dataset: opts.key ? { key: opts.key(r) } : undefined },
            columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.cell(r))),
          ),
        ),
      ),
    ),
  );
}

/**
 * A modal dialog (native <dialog>: focus moves into it, Escape closes it, the page behind is inert).
 * Returns {dialog, close}; the dialog is removed from the document when closed.
 */
export function modal(title, body, opts = {}) {
  const titleId = uid("dlg");
  const dialog = h(
    "dialog",
    { class: "modal", "aria-labelledby": titleId },
    h(
      "div",
      { class: "modal-head" },
      h("h2", { id: titleId }, title),
      h("button", { type: "button", class: "btn btn-ghost", "aria-label": "Close", on: { click: () => close() } }, "✕"),
    ),
    body,
  );
  const close = () => {
    if (dialog.open) dialog.close();
  };
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opts.onClose) opts.onClose();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

/**
 * A form in a modal dialog. `fields` maps the API's field names to field() wrappers (the API's errors
 * are shown next to them; `aliases` maps other names the API uses); `body` lists what the form shows, in
 * order (the fields by default). `submit()` sends it: on success the dialog closes; an error stays in the
 * form. The first field gets the focus.
 */
export function formDialog({ title, fields, body, submitLabel, danger = false, aliases = {}, submit }) {
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const button = h("button", { type: "submit", class: danger ? "btn btn-danger" : "btn btn-primary" }, submitLabel);
  const form = h("form", { class: "modal-body", novalidate: true }, body || Object.values(fields), error, h("div", { class: "actions" }, button));
  const m = modal(title, form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    try {
      if ((await submit()) !== false) m.close();
    } catch (err) {
      showFormError(err, fields, error, aliases);
    } finally {
      button.disabled = false;
    }
  });
  Object.values(fields)[0]?.control.focus();
  return m;
}

/**
 * A red button that asks first (`confirm: {title, text, label?}`) and then runs `action`; a failure is
 * shown as an error toast.
 */
export function dangerButton(label, confirm, action) {
  return h(
    "button",
    {
      type: "button",
      class: "btn btn-danger",
      on: {
        click: async () => {
          if (!(await confirmDialog(confirm.title, confirm.text, confirm.label || label))) return;
          try {
            await action();
          } catch (e) {
            toast(`${label} failed: ${e.message}`, "err");
          }
        },
      },
    },
    label,
  );
}

/** Asks for confirmation; resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel = "Delete") {
  return new Promise((resolve) => {
    let answer = false;
    const cancel = h("button", { type: "button", class: "btn", on: { click: () => m.close() } }, "Cancel");
    const ok = h(
      "button",
      {
        type: "button",
        class: "btn btn-danger",
        on: {
          click: () => {
            answer = true;
            m.close();
          },
        },
      },
      confirmLabel,
    );
    const m = modal(title, h("div", { class: "modal-body" }, h("p", {}, text), h("div", { class: "actions" }, cancel, ok)), {
      onClose: () => resolve(answer),
    });
    cancel.focus();
  });
}

/** Tabs with roving focus (arrow keys), as the WAI-ARIA tabs pattern. tabs: [{id, label}]. */
export function tabs(label, list, current, onSelect) {
  const buttons = list.map((t) =>
    h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `tab-${t.id}`,
        "aria-selected": String(t.id === current),
        "aria-controls": `panel-${t.id}`,
        tabindex: t.id === current ? "0" : "-1",
        class: "tab",
        on: { click: () => onSelect(t.id) },
      },
      t.label,
    ),
  );
  const bar = h("div", { role: "tablist", "aria-label": label, class: "tabs" }, buttons);
  bar.addEventListener("keydown", (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % buttons.length;
    else if (e.key === "ArrowLeft") j = (i - 1 + buttons.length) % buttons.length;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = buttons.length - 1;
    if (j === null) return;
    e.preventDefault();
    buttons[j].focus();
    buttons[j].click();
  });
  return bar;
}

/** A short-lived message in the live region (screen readers announce it). */
export function toast(text, kind = "ok") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const t = h("div", { class: `toast toast-${kind}` }, text);
  region.append(t);
  while (region.children.length > 3) region.firstChild.remove();
  setTimeout(() => t.remove(), 4000);
}

/** Calls f at most once per `ms`, with the latest arguments, at the end of the window. */
export function debounce(f, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), ms);
  };
}
