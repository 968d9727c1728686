// The Bobbin web console: plain JavaScript over the /v1 API, no build step.
// The API key lives in sessionStorage (this tab only) and travels in the
// Authorization header; streams are read with fetch(), never EventSource,
// so the key is never put in a URL.
"use strict";

(() => {
  const KEY_STORAGE = "bobbin.apiKey";
  const PAGE = 1000;
  const OPEN_TURN = new Set(["queued", "running", "awaiting_approval"]);
  const TURN_END = new Set(["turn_completed", "turn_failed", "turn_cancelled"]);
  const DECISIONS = [
    ["allow_once", "Allow once"],
    ["allow_session", "Allow for session"],
    ["deny", "Deny"],
  ];

  const $ = (selector) => document.querySelector(selector);
  const enc = encodeURIComponent;

  // -- DOM ----------------------------------------------------------------------
  // h("li", {class: "x", onclick: fn}, "text", child): text is always set as text, never HTML.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  let noticeTimer = null;
  function notify(message, kind = "error") {
    const box = $("#notice");
    box.textContent = message;
    box.className = kind;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 4000);
  }

  function clearNotice() {
    clearTimeout(noticeTimer);
    $("#notice").hidden = true;
  }

  function showView(id) {
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== id;
    $("#nav").hidden = id === "sign-in-view";
  }

  // The model's Markdown, as sanitised HTML: marked renders it, DOMPurify keeps only the
  // elements Markdown makes and a few plain attributes. No script, handler, style, image,
  // SVG or form; no id, name or class, so an answer can neither clobber the console's own
  // elements nor dress up as its notices. Links open in a new tab without an opener.
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName.toLowerCase() === "a") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  const SANITIZE = {
    ALLOWED_TAGS: ["p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol",
      "li", "a", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr",
      "th", "td"],
    ALLOWED_ATTR: ["href", "title", "start", "align"],
    RETURN_DOM_FRAGMENT: true, // sanitised nodes, never re-parsed from a string
  };
  function markdown(text) {
    return h("div", { class: "md" },
      DOMPurify.sanitize(marked.parse(text, { gfm: true, breaks: true }), SANITIZE));
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const short = (text, n = 80) => (text.length > n ? text.slice(0, n - 1) + "…" : text);
  const json = (value) => JSON.stringify(value, null, 2);
  // A turn's usage: its tokens and what they cost ("estimated" when the server sent none).
  function usageText(usage) {
    if (!usage || (usage.input_tokens == null && usage.output_tokens == null)) return "no usage reported";
    const cost = usage.cost_usd == null ? "no price known" : `$${usage.cost_usd}`;
    const counted = usage.estimated ? " (estimated)" : "";
    return `${usage.input_tokens ?? 0} tokens in, ${usage.output_tokens ?? 0} out${counted} · ${cost}`;
  }

  // -- the API ------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const apiKey = () => sessionStorage.getItem(KEY_STORAGE);

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${apiKey()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 204) return null;
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      const error = (data && data.error) || { code: `http_${resp.status}`, message: resp.statusText };
      if (resp.status === 401) signOut("The API key was refused: sign in again.");
      throw new ApiError(resp.status, error.code, error.message);
    }
    return data;
  }

  async function listAll(path, plural) {
    const items = [];
    let cursor = null;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api("GET", `${path}${sep}limit=${PAGE}${cursor ? `&cursor=${enc(cursor)}` : ""}`);
      items.push(...page[plural]);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  const explain = (err) => (err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));

  // Run an action from a form or button; report its error instead of failing silently.
  const guarded = (fn) => async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    try {
      await fn(event);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) notify(explain(err));
    }
  };

  // -- sign in ------------------------------------------------------------------
  function signOut(reason) {
    sessionStorage.removeItem(KEY_STORAGE);
    chat.close();
    showView("sign-in-view");
    if (reason) notify(reason);
  }

  $("#sign-in-form").addEventListener("submit", guarded(async (event) => {
    const form = event.target;
    sessionStorage.setItem(KEY_STORAGE, form.key.value.trim());
    await api("GET", "/v1/projects?limit=1");
    form.reset();
    clearNotice(); // an earlier refusal no longer stands
    route();
  }));
  $("#sign-out").addEventListener("click", () => signOut());

  // -- providers ----------------------------------------------------------------
  let catalog = null;
  async function loadCatalog() {
    if (!catalog) catalog = (await api("GET", "/v1/providers/catalog")).providers;
    return catalog;
  }

  async function showProviders() {
    showView("providers-view");
    const [providers, instances] = await Promise.all([
      loadCatalog(),
      listAll("/v1/provider-instances", "provider_instances"),
    ]);
    const select = $("#instance-form").catalog_provider_id;
    if (!select.options.length) {
      for (const p of providers) select.append(h("option", { value: p.id }, `${p.name} (${p.type})`));
    }
    $("#instances tbody").replaceChildren(...instances.map((i) => h("tr", { dataset: { instance: i.id } },
      h("td", {}, i.id), h("td", {}, i.name), h("td", {}, i.catalog_provider_id),
      h("td", {}, i.base_url || "default"), h("td", {}, i.has_credential ? "yes" : "no"),
      h("td", {}, h("button", { type: "button", onclick: guarded(() => testInstance(i)) }, "Test")))));
  }

  async function testInstance(instance) {
    const box = $("#test-result");
    box.replaceChildren(h("p", { class: "muted" }, `Testing ${instance.name}…`));
    const result = await api("POST", `/v1/provider-instances/${enc(instance.id)}/test`, {});
    box.replaceChildren(result.ok
      ? h("p", { class: "ok" }, `${instance.name} answers. Models: ${result.models.join(", ") || "none listed"}`)
      : h("p", { class: "error" }, `${instance.name} failed: ${result.error.code}: ${result.error.message}`));
  }

  $("#instance-form").addEventListener("submit", guarded(async (event) => {
    const f = event.target;
    const body = {
      name: f.name.value.trim(),
      catalog_provider_id: f.catalog_provider_id.value,
      timeout_s: Number(f.timeout_s.value || 60),
    };
    if (f.base_url.value.trim()) body.base_url = f.base_url.value.trim();
    if (f.api_key.value) body.credential = { api_key: f.api_key.value };
    const created = await api("POST", "/v1/provider-instances", body);
    f.reset();
    notify(`Provider instance ${created.name} added (${created.id}).`, "info");
    await showProviders();
  }));

  // -- projects and sessions ----------------------------------------------------
  async function showProjects(projectId) {
    showView("projects-view");
    const projects = await listAll("/v1/projects", "projects");
    $("#project-list").replaceChildren(...projects.map((p) => h("li", { class: p.id === projectId ? "selected" : null },
      h("a", { href: `#/projects/${enc(p.id)}` }, p.name))));
    await fillProjectForm();
    $("#session-form").hidden = !projectId;
    $("#sessions-hint").hidden = Boolean(projectId);
    if (!projectId) {
      $("#session-list").replaceChildren();
      $("#new-project").open = projects.length === 0;
      return;
    }
    const sessions = await listAll(`/v1/projects/${enc(projectId)}/sessions`, "sessions");
    sessions.sort((a, b) => b.created_at.localeCompare(a.created_at)); // newest first
    $("#session-list").replaceChildren(...sessions.map((s) => h("li", {},
      h("a", { href: `#/sessions/${enc(s.id)}` }, s.name), " ",
      h("span", { class: "muted" }, new Date(s.created_at).toLocaleString()))));
  }

  async function fillProjectForm() {
    const [providers, instances] = await Promise.all([
      loadCatalog(),
      listAll("/v1/provider-instances", "provider_instances"),
    ]);
    const select = $("#project-form").provider_instance_id;
    const chosen = select.value;
    select.replaceChildren(...instances.map((i) => h("option", { value: i.id, dataset: { provider: i.catalog_provider_id } },
      `${i.name} (${i.id})`)));
    if (chosen) select.value = chosen;
    const fillModels = () => {
      const option = select.selectedOptions[0];
      const provider = option && providers.find((p) => p.id === option.dataset.provider);
      $("#model-options").replaceChildren(...(provider ? provider.models : []).map((m) => h("option", { value: m.id }, m.name)));
    };
    select.onchange = fillModels;
    fillModels();
  }

  $("#project-form").addEventListener("submit", guarded(async (event) => {
    const f = event.target;
    const body = {
      name: f.name.value.trim(),
      configuration: { provider_instance_id: f.provider_instance_id.value, model_id: f.model_id.value.trim() },
    };
    if (f.working_directory.value.trim()) body.working_directory = f.working_directory.value.trim();
    const project = await api("POST", "/v1/projects", body);
    f.reset();
    location.hash = `#/projects/${enc(project.id)}`;
  }));

  $("#session-form").addEventListener("submit", guarded(async (event) => {
    const f = event.target;
    const projectId = decodeURIComponent(location.hash.split("/")[2] || "");
    const session = await api("POST", `/v1/projects/${enc(projectId)}/sessions`, { name: f.name.value.trim() });
    f.reset();
    location.hash = `#/sessions/${enc(session.id)}`;
  }));

  // -- the chat: one agent's events, history then live ---------------------------
  const chat = {
    session: null,
    agentId: null,
    controller: null,
    live: new Map(), // turn id -> the bubble its tokens stream into
    calls: new Map(), // tool call id -> its card
    turnsTimer: null,

    close() {
      if (this.controller) this.controller.abort();
      this.controller = null;
      this.agentId = null;
      $("#events").replaceChildren();
    },

    async open(sessionId, agentId) {
      showView("session-view");
      const session = await api("GET", `/v1/sessions/${enc(sessionId)}`);
      const agents = await listAll(`/v1/sessions/${enc(sessionId)}/agents`, "agents");
      agentId = agentId || session.coordinator_agent_id;
      this.session = session;
      $("#session-title").textContent = session.name;
      $("#agent-select").replaceChildren(...agents.map((a) => h("option", { value: a.id, selected: a.id === agentId },
        `${a.name || "agent"} · ${a.id} · ${a.model_id || "?"}`)));
      if (agentId === this.agentId) return;
      this.close();
      this.agentId = agentId;
      this.live.clear();
      this.calls.clear();
      $("#events").replaceChildren();
      const controller = new AbortController();
      this.controller = controller;
      const history = await listAll(`/v1/agents/${enc(agentId)}/events?after=0`, "events");
      if (controller.signal.aborted) return;
      for (const event of history) render(event);
      setBadge("#agent-state", agents.find((a) => a.id === agentId)?.status || "idle");
      const last = history.length ? history[history.length - 1].seq : 0;
      this.refreshTurns();
      follow(agentId, String(last), controller.signal);
    },

    refreshTurns() {
      clearTimeout(this.turnsTimer);
      this.turnsTimer = setTimeout(guarded(() => showTurns(this.agentId)), 150);
    },
  };

  function setBadge(selector, text) {
    const badge = $(selector);
    badge.textContent = text;
    badge.dataset.value = text;
  }

  // Read the agent's SSE stream with fetch(), resuming after the last id on reconnect.
  async function follow(agentId, lastId, signal) {
    let last = lastId;
    let delay = 500;
    while (!signal.aborted) {
      try {
        const resp = await fetch(`/v1/agents/${enc(agentId)}/events/stream`, {
          headers: { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream", "Last-Event-ID": last },
          signal,
        });
        if (resp.status === 401) return signOut("The API key was refused: sign in again.");
        if (!resp.ok) throw new Error(`the stream answered ${resp.status}`);
        setBadge("#stream-state", "live");
        delay = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = parseFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (!frame) continue;
            last = frame.id || last;
            render(frame.event);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
      }
      setBadge("#stream-state", "reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  function parseFrame(text) {
    let id = null;
    const data = [];
    for (const line of text.split("\n")) {
      if (line.startsWith(":")) continue; // a comment: connected, keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    return data.length ? { id, event: JSON.parse(data.join("\n")) } : null;
  }

  // -- rendering events -----------------------------------------------------------
  function append(item) {
    const list = $("#events");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.append(item);
    if (atBottom) list.scrollTop = list.scrollHeight;
    return item;
  }

  const RENDERERS = {
    system_prompt: (e) => append(h("li", { class: "note" },
      h("details", {}, h("summary", {}, "System prompt"), h("pre", {}, e.data.content)))),
    user_message: (e) => append(h("li", { class: "msg user", dataset: { turn: e.turn_id } }, e.data.content)),
    agent_token: (e) => {
      let bubble = chat.live.get(e.turn_id);
      if (!bubble) {
        bubble = append(h("li", { class: "msg agent streaming", dataset: { turn: e.turn_id } }));
        chat.live.set(e.turn_id, bubble);
      }
      bubble.append(e.data.text);
    },
    agent_message: (e) => {
      const bubble = chat.live.get(e.turn_id);
      chat.live.delete(e.turn_id);
      const item = h("li", { class: "msg agent", dataset: { turn: e.turn_id } }, markdown(e.data.content),
        e.data.partial ? h("span", { class: "tag" }, "partial") : null);
      if (bubble) bubble.replaceWith(item);
      else append(item);
    },
    agent_state: (e) => setBadge("#agent-state", e.data.state),
    tool_call: (e) => {
      const card = append(h("li", { class: "tool", dataset: { call: e.data.tool_call_id } },
        h("div", { class: "tool-head" }, "Tool call ", h("strong", {}, e.data.tool)),
        h("pre", { class: "args" }, json(e.data.arguments))));
      chat.calls.set(e.data.tool_call_id, card);
    },
    tool_approval_request: (e) => {
      const card = chat.calls.get(e.data.tool_call_id);
      if (!card) return;
      const buttons = DECISIONS.map(([decision, label]) => h("button", {
        type: "button",
        onclick: guarded(() => decide(e.agent_id || chat.agentId, e.data.tool_call_id, decision, box)),
      }, label));
      const box = h("div", { class: "approval" }, h("span", {}, "Needs your approval: "), ...buttons);
      card.append(box);
    },
    tool_approval_response: (e) => settleApproval(e.data.tool_call_id, `Decision: ${e.data.decision}`),
    tool_result: (e) => {
      settleApproval(e.data.tool_call_id, null);
      const card = chat.calls.get(e.data.tool_call_id);
      const result = h("div", { class: `result ${e.data.status}` },
        h("span", { class: "tag" }, `result: ${e.data.status}`), h("pre", {}, e.data.content || ""));
      if (card) card.append(result);
      else append(h("li", { class: "tool" }, result));
    },
    local_system_message: (e) => append(h("li", { class: "note" }, e.data.content)),
    compaction: () => append(h("li", { class: "note" }, "The conversation was compacted.")),
    turn_started: (e) => append(h("li", { class: "divider" },
      `Turn started · ${e.data.provider_instance_id || "?"} / ${e.data.model_id || "?"}`)),
    turn_completed: (e) => append(h("li", { class: "note ok" }, `Turn completed · ${usageText(e.data.usage)}`)),
    turn_failed: (e) => {
      dropLive(e.turn_id);
      append(h("li", { class: "note error" }, `Turn failed · ${e.data.code}: ${e.data.message}`));
    },
    turn_cancelled: (e) => {
      dropLive(e.turn_id);
      append(h("li", { class: "note" }, "Turn cancelled"));
    },
  };

  function render(event) {
    if (event.agent_id && event.agent_id !== chat.agentId) return;
    const renderer = RENDERERS[event.type];
    if (renderer) renderer(event);
    if (TURN_END.has(event.type)) setBadge("#agent-state", "idle");
    if (TURN_END.has(event.type) || event.type === "turn_started" || event.type === "tool_approval_request") {
      chat.refreshTurns();
    }
  }

  function dropLive(turnId) {
    const bubble = chat.live.get(turnId);
    if (bubble) bubble.remove();
    chat.live.delete(turnId);
  }

  function settleApproval(callId, text) {
    const card = chat.calls.get(callId);
    const box = card && card.querySelector(".approval");
    if (!box) return;
    if (text) box.replaceChildren(h("span", {}, text));
    else if (box.querySelector("button")) box.replaceChildren(h("span", {}, "Decided"));
  }

  async function decide(agentId, callId, decision, box) {
    for (const button of box.querySelectorAll("button")) button.disabled = true;
    try {
      await api("POST", `/v1/agents/${enc(agentId)}/approvals/${enc(callId)}`, { decision });
      box.replaceChildren(h("span", {}, `Decision: ${decision}`));
    } catch (err) {
      if (err instanceof ApiError && err.code === "approval_already_decided") {
        box.replaceChildren(h("span", {}, "Already decided"));
        return;
      }
      for (const button of box.querySelectorAll("button")) button.disabled = false;
      throw err;
    }
  }

  // -- turns ------------------------------------------------------------------------
  async function showTurns(agentId) {
    if (!agentId) return;
    const page = await api("GET", `/v1/agents/${enc(agentId)}/turns?limit=20`);
    if (agentId !== chat.agentId) return;
    $("#turns").replaceChildren(...page.turns.map((t) => h("li", { class: "turn", dataset: { turn: t.id, status: t.status } },
      h("div", {}, h("span", { class: "badge", dataset: { value: t.status } }, t.status), " ", short(t.input, 60)),
      t.usage ? h("div", { class: "muted usage" }, usageText(t.usage)) : null,
      t.waiting ? h("div", { class: "muted" }, `waiting: ${t.waiting.reason}${t.waiting.until ? ` until ${new Date(t.waiting.until).toLocaleTimeString()}` : ""}`) : null,
      t.error ? h("div", { class: "error" }, `${t.error.code}: ${t.error.message}`) : null,
      OPEN_TURN.has(t.status) ? h("button", {
        type: "button",
        class: "link",
        onclick: guarded(async () => {
          await api("POST", `/v1/turns/${enc(t.id)}/cancel`);
          chat.refreshTurns();
        }),
      }, "Cancel") : null)));
  }

  $("#message-form").addEventListener("submit", guarded(async (event) => {
    const f = event.target;
    const content = f.content.value;
    if (!content.trim() || !chat.agentId) return;
    await api("POST", `/v1/agents/${enc(chat.agentId)}/messages`, { content });
    f.reset();
    chat.refreshTurns();
  }));
  $("#message-form").content.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#message-form").requestSubmit();
  });

  $("#agent-select").addEventListener("change", (event) => {
    location.hash = `#/sessions/${enc(chat.session.id)}/agents/${enc(event.target.value)}`;
  });

  $("#agent-form").addEventListener("submit", guarded(async (event) => {
    const f = event.target;
    const agent = await api("POST", `/v1/sessions/${enc(chat.session.id)}/agents`, { name: f.name.value.trim() });
    f.reset();
    location.hash = `#/sessions/${enc(chat.session.id)}/agents/${enc(agent.id)}`;
  }));

  // -- routing ------------------------------------------------------------------------
  // #/  #/projects/<id>  #/sessions/<id>[/agents/<id>]  #/providers
  const route = guarded(async () => {
    if (!apiKey()) return showView("sign-in-view");
    const [, kind, id, , agentId] = location.hash.split("/").map((part) => decodeURIComponent(part || ""));
    if (kind !== "sessions") chat.close();
    if (kind === "providers") return showProviders();
    if (kind === "sessions" && id) return chat.open(id, agentId || null);
    return showProjects(kind === "projects" ? id : null);
  });

  window.addEventListener("hashchange", route);
  route();
})();
