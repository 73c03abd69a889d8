// Agents: the paged, filterable list (live presence and acks), an agent's overview, and its Config tab
// (config.js). The list asks the API for one page at a time, so it costs the same with 50 or 50,000
// agents.

import * as api from "./api.js";
import {
  h, fill, field, input, select, badge, onlineBadge, shortDid, time, empty, table, formDialog,
  dangerButton, tabs, toast,
} from "./dom.js";
import * as live from "./live.js";
import { configTab } from "./config.js";

const PAGE_SIZE = 50;

function realmsCell(a) {
  if (!a.realms.length) return h("span", { class: "sub" }, "none");
  return h(
    "span",
    { class: "pills" },
    a.realms.map((r) => h("span", { class: "pill" }, r.realmName, r.isPrimary ? h("span", { class: "pill-primary" }, "Primary") : null)),
  );
}

function versionCell(a) {
  if (!a.configVersion) return "—";
  const acked = a.ackedVersion !== null && a.ackedVersion !== undefined && a.ackedVersion >= a.configVersion;
  return h("span", {}, `v${a.configVersion} `, acked ? badge("acked", "ok") : badge("not acked", "warn"));
}

const COLUMNS = [
  {
    label: "Agent",
    cell: (a) =>
      h("div", {}, h("a", { href: `#/agents/${api.enc(a.did)}`, class: "strong" }, a.name || "(unnamed)"), h("div", { class: "sub mono", title: a.did }, shortDid(a.did))),
  },
  { label: "Realms", cell: realmsCell },
  { label: "Status", cell: (a) => onlineBadge(a.online) },
  { label: "Edge", cell: (a) => a.edgeId || "—" },
  { label: "Config", cell: versionCell },
  { label: "Acked", cell: (a) => (a.ackedVersion === null || a.ackedVersion === undefined ? "—" : `v${a.ackedVersion}`), class: "num" },
];

/**
 * A paged agents table at `path` with `params()` as filters; previous / next by cursor. Presence and
 * acks from the feed patch the rows on screen; other changes reload the page (at most twice a second).
 * Returns {el, load(reset), stop}.
 */
export function pagedAgents(path, params, opts = {}) {
  const body = h("div", { class: "list-body", "aria-live": "polite", "aria-busy": "false" });
  const info = h("span", { class: "sub" });
  const prev = h("button", { type: "button", class: "btn", disabled: true }, "Previous");
  const next = h("button", { type: "button", class: "btn", disabled: true }, "Next");
  const el = h("div", {}, body, h("div", { class: "pager" }, prev, info, next));
  const cursors = [null];
  let page = 0;
  let rows = [];
  let pending = null;

  async function load(resetPaging = false, fresh = false) {
    if (resetPaging) {
      cursors.length = 1;
      page = 0;
    }
    if (pending) pending.abort();
    const ctl = new AbortController();
    pending = ctl;
    body.setAttribute("aria-busy", "true");
    let r;
    try {
      r = await api.get(api.withQuery(path, { ...params(), limit: opts.pageSize || PAGE_SIZE, cursor: cursors[page] }), { signal: ctl.signal, fresh });
    } catch (e) {
      if (e.name === "AbortError") return;
      fill(body, h("p", { class: "form-error", role: "alert" }, e.message));
      return;
    } finally {
      if (pending === ctl) pending = null;
      body.setAttribute("aria-busy", "false");
    }
    rows = r.agents;
    cursors[page + 1] = r.next;
    cursors.length = page + 2;
    prev.disabled = page === 0;
    next.disabled = !r.next;
    info.textContent = rows.length ? `Page ${page + 1} · ${rows.length} agent${rows.length === 1 ? "" : "s"}` : "";
    render();
  }

  function render() {
    if (!rows.length) {
      fill(body, empty(page === 0 ? "No agents" : "No more agents", opts.emptyText || "No agent matches these filters.", null));
      return;
    }
    fill(body, table(opts.caption || "Agents", COLUMNS, rows, { key: (a) => a.did, class: "agents" }));
  }

  prev.addEventListener("click", () => {
    if (page > 0) {
      page -= 1;
      load();
    }
  });
  next.addEventListener("click", () => {
    if (cursors[page + 1]) {
      page += 1;
      load();
    }
  });

  const sc = live.scope();
  const reload = sc.later(() => load(false, true), 300);
  sc.on((ev) => {
    const changes = live.agentChanges(ev);
    if (changes.length) {
      let touched = false;
      for (const c of changes) {
        const a = rows.find((x) => x.did === c.did);
        if (!a) continue;
        touched = true;
        if (c.online !== undefined) {
          a.online = c.online;
          a.edgeId = c.edgeId;
          a.lastSeen = c.at || a.lastSeen;
        }
        if (c.acked !== undefined) a.ackedVersion = Math.max(a.ackedVersion ?? 0, c.acked);
      }
      // A filter on `online` may now exclude a row: the page is asked again.
      if (touched && params().online) reload();
      else if (touched) render();
      return;
    }
    if (ev.kind === "reset" || ev.kind.startsWith("agent.") || ev.kind.startsWith("realm.agent.") || ev.kind === "realm.config.pushed" || ev.kind === "realm.deleted") reload();
  });
  return { el, load, stop: sc.stop };
}

/** `#/agents?q=&online=&mode=&realmId=` */
export async function list(main, route, ctx) {
  const admin = ctx.session.admin;
  const realms = await api.all("/api/realms", "realms");
  const q = input("q", { type: "search", value: route.query.get("q") || "", placeholder: "Name or did:key:…" });
  const online = select("online", [["", "Any"], ["true", "Online"], ["false", "Offline"]], route.query.get("online") || "");
  const mode = select("mode", [["", "Any"], ["realm", "Realm Routing"], ["registry", "From Registry"], ["manual", "Manual"], ["none", "No config"]], route.query.get("mode") || "");
  const realmOptions = [...(admin ? [["", "All realms"]] : []), ...realms.map((r) => [r.id, r.name])];
  const realm = select("realmId", realmOptions, route.query.get("realmId") || (admin ? "" : realms[0]?.id || ""));
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter agents", on: { submit: (e) => e.preventDefault() } },
    field("Search", q),
    field("Status", online),
    field("Config", mode),
    field("Realm", realm),
  );
  const params = () => {
    const p = { q: q.value.trim(), online: online.value, mode: mode.value };
    if (admin && realm.value) p.realmId = realm.value;
    return p;
  };
  const path = () => (!admin && realm.value ? `/api/realms/${api.enc(realm.value)}/agents` : "/api/agents");
  let paged = null;
  const holder = h("div");
  const register = admin ? h("button", { type: "button", class: "btn btn-primary", on: { click: () => registerDialog(ctx) } }, "Register agent") : null;
  fill(
    main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Agents"), h("p", { class: "lede" }, "Live status, delivered config versions and acknowledgements.")), register),
    h("section", { class: "card" }, filters, holder),
  );
  if (!admin && !realms.length) {
    fill(holder, empty("No realms", "This token manages no realm.", null));
    return null;
  }
  function build() {
    if (paged) paged.stop();
    paged = pagedAgents(path(), params, { caption: "Agents" });
    fill(holder, paged.el);
    return paged.load(true);
  }
  const apply = () => {
    const p = { ...params() };
    if (!admin) p.realmId = realm.value;
    ctx.replaceQuery(Object.fromEntries(Object.entries(p).filter(([, v]) => v)));
    return build();
  };
  const sc = live.scope();
  q.addEventListener("input", sc.later(apply, 200));
  for (const s of [online, mode, realm]) s.addEventListener("change", apply);
  await build();
  return () => {
    sc.stop();
    if (paged) paged.stop();
  };
}

function registerDialog(ctx) {
  const did = field("DID", input("did", { required: true, placeholder: "did:key:z6Mk…", class: "mono" }), "The agent's did:key (vc-agent did --key FILE prints it).");
  const name = field("Name", input("name", { required: true, maxlength: 200 }));
  formDialog({
    title: "Register agent",
    fields: { did, name },
    submitLabel: "Register agent",
    submit: async () => {
      const r = await api.post("/api/agents", { did: did.control.value.trim(), name: name.control.value.trim() });
      toast(`Agent "${r.agent.name}" registered.`);
      ctx.go("agents", r.agent.did);
    },
  });
}

/** `#/agents/<did>?tab=overview|config` */
export async function detail(main, route, ctx) {
  const did = route.id;
  let tab = route.query.get("tab") === "config" ? "config" : "overview";
  let agent = (await api.get(`/api/agents/${api.enc(did)}`)).agent;
  const head = h("div", { class: "page-head" });
  const bar = h("div");
  const panel = h("div", { role: "tabpanel", class: "tabpanel" });
  fill(main, h("p", { class: "crumbs" }, h("a", { href: "#/agents" }, "Agents")), head, bar, panel);
  let tabView = null;

  function renderHead() {
    const remove = ctx.session.admin
      ? dangerButton("Delete", { title: `Delete ${agent.name}?`, text: "Its live session is closed and it can no longer connect." }, async () => {
          await api.del(`/api/agents/${api.enc(did)}`);
          toast(`Agent "${agent.name}" deleted.`);
          ctx.go("agents");
        })
      : null;
    fill(
      head,
      h("div", {}, h("h1", {}, agent.name || "(unnamed agent)"), h("p", { class: "lede" }, onlineBadge(agent.online), " ", h("span", { class: "mono sub", title: did }, shortDid(did)))),
      h("div", { class: "actions" }, remove),
    );
  }

  function overview() {
    const llm = agent.activeLlm ? `${agent.activeLlm.provider || "?"} / ${agent.activeLlm.model || "?"}` : "—";
    fill(
      panel,
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Overview"),
        h(
          "dl",
          { class: "props" },
          [
            ["DID", h("code", { class: "wrap" }, did)],
            ["Realms", realmsCell(agent)],
            ["Status", onlineBadge(agent.online)],
            ["Edge", agent.edgeId || "—"],
            ["Last seen", time(agent.lastSeen)],
            ["Config version", agent.configVersion ? `v${agent.configVersion}` : "—"],
            ["Acked version", agent.ackedVersion ? `v${agent.ackedVersion}` : "—"],
            ["Active LLM (reported)", llm],
            ["Registered", time(agent.createdAt)],
          ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        ),
      ),
    );
  }

  function renderTab() {
    fill(bar, tabs("Agent", [{ id: "overview", label: "Overview" }, { id: "config", label: "Config" }], tab, selectTab));
    panel.id = `panel-${tab}`;
    panel.setAttribute("aria-labelledby", `tab-${tab}`);
    if (tabView) tabView.stop();
    tabView = null;
    if (tab === "overview") overview();
    else tabView = configTab(panel, did, () => agent, ctx);
  }

  function selectTab(t) {
    tab = t;
    ctx.replaceQuery(t === "overview" ? {} : { tab: t });
    renderTab();
    document.getElementById(`tab-${t}`)?.focus();
  }

  renderHead();
  renderTab();
  const sc = live.scope();
  const refresh = sc.later(async () => {
    try {
      agent = (await api.get(`/api/agents/${api.enc(did)}`, { fresh: true })).agent;
    } catch (e) {
      if (e.status === 404) fill(head, h("h1", {}, "Agent deleted"));
      return;
    }
    renderHead();
    if (tab === "overview") overview();
    else if (tabView) tabView.agentChanged();
  }, 150);
  sc.on((ev) => {
    const mine = live.agentChanges(ev).filter((c) => c.did === did);
    if (mine.length) {
      for (const c of mine) {
        if (c.online !== undefined) {
          agent.online = c.online;
          agent.edgeId = c.edgeId;
          agent.lastSeen = c.at || agent.lastSeen;
          if (c.activeLlm) agent.activeLlm = c.activeLlm;
        }
        if (c.acked !== undefined) agent.ackedVersion = Math.max(agent.ackedVersion ?? 0, c.acked);
      }
      renderHead();
      if (tab === "overview") overview();
      else if (tabView) tabView.agentChanged();
      return;
    }
    const s = live.subjectOf(ev);
    const member = agent.realms.some((r) => s.type === "realm" && r.realmId === s.id);
    if (ev.kind === "reset" || (s.type === "agent" && s.id === did) || ev.details?.agentDid === did || member) {
      refresh();
      if (tabView) tabView.routingChanged(ev);
    } else if (tabView && ev.kind.startsWith("model.")) {
      tabView.routingChanged(ev);
    }
  });
  return () => {
    sc.stop();
    if (tabView) tabView.stop();
  };
}
