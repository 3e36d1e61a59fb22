// ambient web UI: a Loom in the browser. Vanilla JS, no build step, nothing from the internet.
// The page is opened with #token=… (the fragment never reaches a server). The token is kept in
// sessionStorage, dropped from the address bar, and sent only to this daemon: in an Authorization
// header on every fetch and as the WebSocket's first message. No cookie carries it: a cookie of
// 127.0.0.1 would go to every other server on this host.
"use strict";

const $ = (sel) => document.querySelector(sel);

const TOKEN = takeToken();

function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const given = hash.get("token");
  if (given) {
    sessionStorage.setItem("ambient.token", given);
    hash.delete("token");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem("ambient.token") || "";
}

// ------------------------------------------------------------------ state
const S = {
  trees: [],
  treeId: null,
  tree: null,
  nodes: new Map(), // id -> node (no tokens)
  kids: new Map(), // parent id -> [child ids], in order
  details: new Map(), // id -> node with tokens and provenance
  offers: new Map(), // offer id -> offer
  streams: new Map(), // offer id -> {parent_id, tree_id, n, branches: [[token]], provenance}
  sel: null,
  lastChild: new Map(),
  panelFor: null, // node id shown in the provenance panel
  showPruned: false,
  heat: localStorage.getItem("ambient.heat") !== "0",
  heatKind: localStorage.getItem("ambient.heatKind") || "probability",
  auto: localStorage.getItem("ambient.auto") !== "0",
  adapter: null, // the personal adapter in use ({name, share, problem}), from /api/status
};
const tokenOf = new WeakMap(); // token <span> -> token

// -------------------------------------------------------------------- API
async function api(method, path, body) {
  const init = { method, credentials: "omit", headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = {};
  try {
    data = await response.json();
  } catch (_) {
    /* not JSON */
  }
  if (!response.ok) {
    const err = new Error(data.error || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return data;
}

function toast(message, isError = false, ms = isError ? 6000 : 2500) {
  const el = $("#toast");
  el.textContent = message;
  el.classList.toggle("error", isError);
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), ms);
}

async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    toast(err.message, true);
    return undefined;
  }
}

// ------------------------------------------------------------------- data
function putNode(node) {
  const known = S.nodes.get(node.id);
  S.nodes.set(node.id, { ...node, tokens: undefined, provenance: undefined });
  if (!known && node.parent_id) {
    const list = S.kids.get(node.parent_id) || [];
    if (!list.includes(node.id)) list.push(node.id);
    S.kids.set(node.parent_id, list);
  }
  if (node.tokens !== undefined) S.details.set(node.id, node);
  else if (S.details.has(node.id)) S.details.set(node.id, { ...S.details.get(node.id), ...node, tokens: S.details.get(node.id).tokens, provenance: S.details.get(node.id).provenance });
}

function children(id, includePruned = S.showPruned) {
  return (S.kids.get(id) || []).map((k) => S.nodes.get(k)).filter((n) => n && (includePruned || n.status !== "pruned"));
}

function ancestry(id) {
  const path = [];
  let node = S.nodes.get(id);
  while (node) {
    path.unshift(node);
    node = node.parent_id ? S.nodes.get(node.parent_id) : null;
  }
  return path;
}

function defaultNode() {
  // Follow the picked branch from the root, most recent pick first.
  let node = S.nodes.get(S.tree.root_id);
  for (;;) {
    const picked = children(node.id, false).filter((c) => c.status === "picked");
    if (!picked.length) return node.id;
    node = picked.reduce((a, b) => (b.updated_at > a.updated_at ? b : a));
  }
}

async function loadTrees() {
  const data = await api("GET", "/api/trees");
  S.trees = data.trees;
  renderTreeSelect();
}

async function openTree(treeId, nodeId) {
  const data = await api("GET", `/api/trees/${encodeURIComponent(treeId)}`);
  S.treeId = treeId;
  S.tree = data.tree;
  S.nodes.clear();
  S.kids.clear();
  S.details.clear();
  S.offers.clear();
  S.lastChild.clear();
  data.nodes.forEach(putNode);
  data.offers.forEach((o) => S.offers.set(o.id, o));
  $("#empty").hidden = true;
  $("#doc").hidden = false;
  renderTreeSelect();
  renderPersonal();
  await select(nodeId && S.nodes.has(nodeId) ? nodeId : defaultNode());
}

// The document's personal switch, shown while a personal adapter writes a share of the branches.
function renderPersonal() {
  const a = S.adapter;
  const wrap = $("#personal-wrap");
  wrap.hidden = !(a && a.name) || !S.tree;
  if (wrap.hidden) return;
  const on = !(S.tree.meta && S.tree.meta.personal === false);
  $("#personal").checked = on;
  const share = Math.round(a.share * 100);
  wrap.title = on
    ? `Your personal adapter "${a.name}" writes ${share}% of this document's branches (labelled); untick for the base model only`
    : `The base model writes every branch of this document; tick to let your personal adapter "${a.name}" write ${share}%`;
}

async function loadAdapter() {
  const status = await api("GET", "/api/status");
  S.adapter = status.adapter || null;
  renderPersonal();
}

async function setPersonal(on) {
  const data = await attempt(() => api("POST", `/api/trees/${encodeURIComponent(S.treeId)}/personal`, { on }));
  if (data) S.tree = data.tree;
  renderPersonal();
}

async function refreshTree() {
  if (!S.treeId) return;
  const data = await api("GET", `/api/trees/${encodeURIComponent(S.treeId)}`);
  S.tree = data.tree;
  data.nodes.forEach(putNode);
  data.offers.forEach((o) => S.offers.set(o.id, o));
  render();
}

async function fetchDetails(id) {
  const data = await api("GET", `/api/nodes/${encodeURIComponent(id)}`);
  S.details.set(id, { ...data.node, revisions: data.revisions });
  putNode(data.node);
  data.children.forEach((c) => putNode(c));
  return data;
}

const fetching = new Set();
function refetch(id) {
  // Tokens of children that arrived without them (e.g. while the WebSocket was reconnecting).
  if (fetching.has(id)) return;
  fetching.add(id);
  fetchDetails(id)
    .then(scheduleRender)
    .catch(() => null)
    .finally(() => setTimeout(() => fetching.delete(id), 1000));
}

async function ensureDetails(id) {
  const wanted = ancestry(id).map((n) => n.id).filter((k) => !S.details.has(k) && k !== id);
  await Promise.all([fetchDetails(id), ...wanted.map((k) => fetchDetails(k).catch(() => null))]);
}

async function select(id) {
  if (!S.nodes.has(id)) return;
  S.sel = id;
  const node = S.nodes.get(id);
  if (node.parent_id) S.lastChild.set(node.parent_id, id);
  history.replaceState(null, "", `#t=${S.treeId}&n=${id}`);
  if (S.panelFor !== null) S.panelFor = id;
  render();
  await attempt(() => ensureDetails(id));
  if (S.sel === id) render();
}

// ----------------------------------------------------------------- render
let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function isNoteTree() {
  return Boolean(S.tree && typeof S.tree.source === "string" && S.tree.source.startsWith("note:"));
}

function acceptable(node) {
  // A model continuation in a note's tree can be inserted into the note (POST /api/nodes/ID/accept).
  return Boolean(node && isNoteTree() && node.author.kind === "model" && node.parent_id);
}

function render() {
  if (!S.tree || !S.sel) return;
  $("#accept-btn").hidden = !acceptable(currentNode());
  renderTreeNav();
  renderPath();
  renderOffers();
  renderBookmarks();
  renderPanel();
  renderActivity();
  renderHeatKinds();
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function preview(text, width = 46) {
  const flat = text.replace(/\s+/g, " ").trim();
  if (!flat) return "∅";
  return flat.length > width ? flat.slice(0, width - 1) + "…" : flat;
}

function renderTreeSelect() {
  const select = $("#tree-select");
  select.replaceChildren();
  for (const t of S.trees) {
    const option = el("option", "", preview(t.title || "untitled", 40));
    option.value = t.id;
    select.append(option);
  }
  if (S.treeId) select.value = S.treeId;
  select.hidden = S.trees.length === 0;
}

function renderTreeNav() {
  const onPath = new Set(ancestry(S.sel).map((n) => n.id));
  const build = (node) => {
    const wrap = el("div");
    const row = el("div", `tn ${node.status}`);
    row.dataset.id = node.id;
    if (onPath.has(node.id)) row.classList.add("on-path");
    if (node.id === S.sel) row.classList.add("sel");
    const dot = el("span", `dot ${node.status} ${node.author.kind}`);
    row.append(dot, el("span", "tn-text", preview(node.text)));
    if (node.bookmarked) row.append(el("span", "star", "★"));
    wrap.append(row);
    const kids = children(node.id);
    const streaming = [...S.streams.values()].some((s) => s.parent_id === node.id);
    if (streaming) row.append(el("span", "tn-more", "⋯"));
    if (!kids.length) return wrap;
    if (onPath.has(node.id)) {
      const box = el("div", "tn-kids");
      kids.forEach((k) => box.append(build(k)));
      wrap.append(box);
    } else {
      row.append(el("span", "tn-more", `+${kids.length}`));
    }
    return wrap;
  };
  const root = S.nodes.get(S.tree.root_id);
  $("#tree").replaceChildren(build(root));
  const sel = $("#tree .tn.sel");
  if (sel) sel.scrollIntoView({ block: "nearest" });
}

function tokenSpans(parent, tokens) {
  for (const t of tokens) parent.append(tokenSpan(t));
}

// What the heatmap shades, 0 (none) to 1 (full); null = this token has no such signal.
const HEAT = {
  probability: (t) => (typeof t.logprob === "number" && !t.surprise ? 1 - Math.exp(t.logprob) : null),
  entropy: (t) => (typeof t.entropy === "number" ? Math.min(1, t.entropy / 6) : null),
  ease: (t) => ("ease" in t ? (t.ease === null ? 1 : t.ease) : null),
  attention: (t) => (t.attention ? t.attention.recent : null),
  surprise: (t) => (t.surprise && typeof t.logprob === "number" ? Math.min(1, -t.logprob / 12) : null),
};

function tokenSpan(t) {
  const span = el("span", "tok", t.text);
  const a = (HEAT[S.heatKind] || HEAT.probability)(t);
  if (a !== null) span.style.setProperty("--a", a.toFixed(3));
  tokenOf.set(span, t);
  return span;
}

function textInto(target, node) {
  const detail = S.details.get(node.id);
  const tokens = detail && detail.tokens;
  const joined = tokens ? tokens.map((t) => t.text).join("") : null;
  if (node.author.kind === "model" && tokens && joined === node.text) tokenSpans(target, tokens);
  else if (node.author.kind !== "model" && S.heatKind === "surprise") surpriseInto(target, node);
  else target.textContent = node.text;
}

// A person's text, with each token the model scored as a span (surprise = its logprob).
function surpriseInto(target, node) {
  let at = 0;
  for (const [start, end, logprob] of surpriseOf(node.id)) {
    if (start < at || end > node.text.length) continue;
    if (start > at) target.append(node.text.slice(at, start));
    target.append(tokenSpan({ text: node.text.slice(start, end), logprob, surprise: true }));
    at = end;
  }
  target.append(node.text.slice(at));
}

// [start, end, logprob] of a node's text, from the latest offer that scored it.
function surpriseOf(nodeId) {
  const offers = [...S.offers.values()].sort((a, b) => b.created_at - a.created_at);
  for (const o of offers) {
    const spans = ((o.meta && o.meta.surprise) || []).filter((s) => s[0] === nodeId && s[3] !== null);
    if (spans.length) return spans.map((s) => s.slice(1));
  }
  return [];
}

// The heatmap kinds that something loaded can show; the others are hidden in the switch.
function availableHeat() {
  const found = new Set(["probability"]);
  for (const d of S.details.values()) {
    for (const t of d.tokens || []) {
      if ("entropy" in t) found.add("entropy");
      if ("ease" in t) found.add("ease");
      if (t.attention) found.add("attention");
    }
  }
  for (const o of S.offers.values()) if (o.meta && o.meta.surprise && o.meta.surprise.length) found.add("surprise");
  return found;
}

function renderHeatKinds() {
  const found = availableHeat();
  const select = $("#heat-kind");
  for (const option of select.options) option.hidden = !found.has(option.value);
  select.value = found.has(S.heatKind) ? S.heatKind : "probability";
  select.disabled = !S.heat;
}

function renderPath() {
  const box = $("#path");
  box.classList.toggle("heat", S.heat);
  box.replaceChildren();
  for (const node of ancestry(S.sel)) {
    const seg = el("span", `seg ${node.author.kind} status-${node.status}`);
    seg.dataset.id = node.id;
    seg.classList.add(node.id === S.sel ? "current" : "ancestor");
    textInto(seg, node);
    box.append(seg);
  }
  if ([...S.streams.values()].some((s) => s.parent_id === S.sel)) box.append(el("span", "caret"));
  const current = box.querySelector(".seg.current");
  if (current) current.scrollIntoView({ block: "nearest" });
}

function renderOffers() {
  const box = $("#offers");
  box.classList.toggle("heat", S.heat);
  box.replaceChildren();
  const kids = children(S.sel);
  kids.forEach((node, i) => box.append(nodeCard(node, i)));
  if (kids.some((k) => k.author.kind === "model" && !S.details.has(k.id))) refetch(S.sel);
  let streams = 0;
  for (const [offerId, stream] of S.streams) {
    if (stream.parent_id !== S.sel) continue;
    stream.branches.forEach((tokens, b) => box.append(streamCard(offerId, b, tokens)));
    streams++;
  }
  if (!kids.length && !streams) box.append(el("div", "none", "No continuations here yet: press r for an offer, or write your own below."));
  $("#offers-hint").textContent = kids.length ? "click or press 1–9 to pick · hover a word for alternatives" : "";
}

function nodeCard(node, i) {
  const offer = node.offer_id ? S.offers.get(node.offer_id) : null;
  const card = el("div", `card ${node.status}`);
  if (offer && offer.state === "failed") card.classList.add("failed");
  card.dataset.id = node.id;
  card.tabIndex = 0;
  const head = el("div", "card-head");
  if (i < 9) head.append(el("kbd", "", String(i + 1)));
  const who = node.author.kind === "model" ? `model${node.author.name ? " · " + node.author.name : ""}` : "you";
  head.append(el("span", "", who));
  if (node.meta && node.meta.edited_from) head.append(el("span", "", "· edited"));
  if (offer && offer.state !== "done") head.append(el("span", "", `· ${offer.state}`));
  if (node.bookmarked) head.append(el("span", "star", "★"));
  const by = node.meta && node.meta.adapter;
  if (by && by !== "none") head.append(el("span", "badge personal", `· personal (${by})`));
  for (const badge of offerBadges(offer, node)) head.append(badge);
  const text = el("div", "card-text");
  textInto(text, node);
  const actions = el("div", "card-actions");
  for (const [act, label, title] of [
    ["pick", "Pick", "Pick this continuation"],
    ["edit", "✎", "Edit (a new human node; the original is kept)"],
    ["bookmark", "★", "Bookmark"],
    ["prune", "✕", node.status === "pruned" ? "Unprune" : "Prune"],
    ["provenance", "¶", "Provenance"],
    ["forget", "⌫", "Forget this node for good: the store, memory and sidecars (what was below it moves up)"],
    ...(acceptable(node) ? [["accept", "⤵ Accept into note", "Insert into the note at the point it was offered for (a)"]] : []),
  ]) {
    const b = el("button", "", label);
    b.dataset.act = act;
    b.title = title;
    actions.append(b);
  }
  card.append(head, text, actions);
  return card;
}

function streamCard(offerId, branch, tokens) {
  const card = el("div", "card streaming");
  card.dataset.offer = offerId;
  card.dataset.branch = String(branch);
  const head = el("div", "card-head");
  head.append(el("span", "pulse"), el("span", "", "sampling…"));
  const text = el("div", "card-text");
  text.dataset.stream = `${offerId}:${branch}`;
  tokenSpans(text, tokens);
  card.append(head, text);
  return card;
}

function renderBookmarks() {
  const list = $("#bookmarks");
  list.replaceChildren();
  const marked = [...S.nodes.values()].filter((n) => n.bookmarked);
  if (!marked.length) list.append(el("li", "none", "none yet (b)"));
  for (const n of marked) {
    const li = el("li", "", "★ " + preview(n.text, 40));
    li.dataset.id = n.id;
    list.append(li);
  }
}

// Sources that crashed: shown until the page reloads, so a person knows a restart happened.
function renderSources() {
  const box = $("#sources");
  const crashed = Object.values(S.sources || {});
  box.hidden = crashed.length === 0;
  box.textContent = crashed
    .map((s) => `${s.name}: ${s.state}${s.restarts ? `, restarted ${s.restarts}×` : ""}`)
    .join(" · ");
  box.title = crashed.map((s) => `${s.name}: ${s.last_error}`).join("\n");
  box.classList.toggle("bad", crashed.some((s) => s.state !== "running"));
}

function renderActivity() {
  const count = S.streams.size;
  $("#activity").hidden = count === 0;
  $("#activity-text").textContent = count > 1 ? `sampling ${count} offers` : "sampling";
}

// -------------------------------------------------------------- provenance
function renderPanel() {
  const panel = $("#panel");
  panel.hidden = S.panelFor === null;
  if (S.panelFor === null) return;
  const node = S.details.get(S.panelFor) || S.nodes.get(S.panelFor);
  const box = $("#provenance");
  box.replaceChildren();
  if (!node) return;
  const offer = node.offer_id ? S.offers.get(node.offer_id) : null;
  box.append(el("div", "quote", preview(node.text, 240)));
  const facts = [
    ["node", node.id.slice(0, 12)],
    ["written by", node.author.kind === "model" ? `model ${node.author.name}` : "a person"],
    ["status", node.status + (node.bookmarked ? " · ★" : "")],
  ];
  if (node.meta && node.meta.edited_from) facts.push(["edited from", node.meta.edited_from.slice(0, 12)]);
  if (node.meta && node.meta.finish_reason) facts.push(["finished by", node.meta.finish_reason]);
  if (offer) facts.push(["offer", `${offer.id.slice(0, 12)} · ${offer.state}${offer.error ? " · " + offer.error : ""}`]);
  box.append(el("h3", "", "Node"), dl(facts));
  const settings = node.author.settings;
  if (settings) {
    const keys = ["n", "temperature", "top_p", "top_k", "max_tokens", "seed", "stop"];
    box.append(el("h3", "", "Sampling"), dl(keys.filter((k) => k in settings).map((k) => [k, JSON.stringify(settings[k])])));
  }
  const prov = node.provenance;
  if (prov) renderPrompt(box, prov);
  else if (node.author.kind === "model") box.append(el("p", "hint", "loading…"));
  else box.append(el("p", "hint", "Written by a person: no prompt went into it."));
  if (node.revisions && node.revisions.length) {
    box.append(el("h3", "", "Earlier versions"));
    for (const r of node.revisions) box.append(el("div", "quote", preview(r.text, 200)));
  }
}

function renderPrompt(box, prov) {
  const src = prov.source || {};
  const chars = src.chars || [0, 0];
  const facts = [
    ["budget", `${prov.budget} tokens`],
    ["source", `${src.kind || "?"}${src.key ? " · " + src.key : ""}`],
    ["source text", `${src.tokens} tokens, ${chars[1]} chars`],
  ];
  if (chars[0]) facts.push(["cut", `${chars[0]} chars from the left`]);
  if (prov.truncated_tokens) facts.push(["truncated", `${prov.truncated_tokens} tokens`]);
  facts.push(["memory", String(prov.memory)]);
  if (prov.walls) {
    const shared = prov.walls.shared.length ? ` + shared: ${prov.walls.shared.join(", ")}` : "";
    facts.push(["walls", `${prov.walls.scope} sees ${prov.walls.walls.join(", ")}${shared}`]);
  }
  box.append(el("h3", "", "What went into the prompt"), dl(facts));
  const retrieved = prov.retrieved || [];
  box.append(el("h3", "", `Retrieved fragments (${retrieved.length})`));
  if (!retrieved.length) box.append(el("p", "hint", "none"));
  for (const f of retrieved) box.append(fragmentButton(f));
  const cut = (prov.cut && prov.cut.fragments) || [];
  if (cut.length) {
    box.append(el("h3", "", `Left out for room (${cut.length})`));
    for (const f of cut) box.append(fragmentButton(f));
  }
}

// What the node's offer says about its branch: a cluster's share of the samples, memory ignored.
function offerBadges(offer, node) {
  const meta = (offer && offer.meta) || {};
  const branch = node.branch;
  const out = [];
  const pick = meta.diverse && meta.diverse.picks && meta.diverse.picks[branch];
  if (pick) out.push(el("span", "badge share", `· ${pick.cluster} of ${meta.diverse.pool} samples`));
  const b = meta.signals && meta.signals.branches && meta.signals.branches[branch];
  if (b && b.ignores_memory) out.push(el("span", "badge warn", "· ignores the retrieved memory"));
  return out;
}

function fragmentButton(f) {
  const b = el("button", "frag");
  b.dataset.tree = f.tree_id;
  b.dataset.node = f.node_id;
  const text = el("span", "", f.node_id.slice(0, 12));
  const where = f.scope ? ` · from ${f.scope}` : "";
  b.append(text, el("span", "meta", `score ${Number(f.score).toFixed(3)} · ${f.tokens} tokens${where}`));
  api("GET", `/api/nodes/${encodeURIComponent(f.node_id)}`)
    .then((d) => (text.textContent = preview(d.node.text, 160)))
    .catch(() => (text.textContent = "(no longer in the store)"));
  return b;
}

function dl(pairs) {
  const list = el("dl");
  for (const [k, v] of pairs) list.append(el("dt", "", k), el("dd", "", v));
  return list;
}

// --------------------------------------------------------------- token card
function signalLines(t) {
  const lines = [];
  if (typeof t.entropy === "number") lines.push(`entropy ${t.entropy.toFixed(2)} nats`);
  if ("ease_layer" in t) {
    lines.push(t.ease_layer === null ? "ease: not the top word even at the last layer" : `ease: on top from layer ${t.ease_layer} (${Math.round(t.ease * 100)}% of the depth)`);
  }
  const a = t.attention;
  if (a) {
    const pc = (x) => `${Math.round(x * 100)}%`;
    lines.push(`attention: memory ${pc(a.memory)} · source ${pc(a.source)} · new ${pc(a.new)} · last 16 tokens ${pc(a.recent)}`);
  }
  return lines;
}

function showTokenCard(span) {
  const t = tokenOf.get(span);
  const card = $("#tokencard");
  if (!t || typeof t.logprob !== "number") return;
  card.replaceChildren();
  card.append(el("div", "tc-tok", JSON.stringify(t.text)));
  const what = t.surprise ? "your word: p" : "p";
  card.append(el("div", "tc-p", `${what} = ${(Math.exp(t.logprob) * 100).toFixed(1)}%   logprob ${t.logprob.toFixed(3)}`));
  for (const line of signalLines(t)) card.append(el("div", "tc-sig", line));
  for (const alt of t.top || []) {
    const p = Math.exp(alt.logprob);
    const row = el("div", `alt${alt.text === t.text ? " chosen" : ""}`);
    const label = el("span", "alt-text", JSON.stringify(alt.text));
    const bar = el("span", "bar");
    bar.style.width = `${Math.max(2, p * 100).toFixed(1)}%`;
    label.prepend(bar);
    row.append(label, el("span", "alt-p", `${(p * 100).toFixed(1)}%`));
    card.append(row);
  }
  const r = span.getBoundingClientRect();
  card.hidden = false;
  const w = card.offsetWidth;
  const h = card.offsetHeight;
  card.style.left = `${Math.min(window.innerWidth - w - 8, Math.max(8, r.left))}px`;
  card.style.top = `${r.bottom + 6 + h > window.innerHeight ? r.top - h - 6 : r.bottom + 6}px`;
}

// ---------------------------------------------------------------- actions
function currentNode() {
  return S.nodes.get(S.sel);
}

async function pick(id) {
  const data = await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(id)}/pick`));
  if (!data) return;
  for (const pid of data.path) {
    const n = S.nodes.get(pid);
    if (n) S.nodes.set(pid, { ...n, status: "picked" });
  }
  putNode(data.node);
  const offering = S.auto && !children(id, true).length ? regenerate(id) : null;
  await select(id);
  await offering;
}

async function accept(id = S.sel) {
  const node = S.nodes.get(id);
  if (!acceptable(node)) return toast("only a model continuation in a note's tree can be accepted into the note", true);
  let data;
  try {
    data = await api("POST", `/api/nodes/${encodeURIComponent(id)}/accept`);
  } catch (err) {
    const refused = err.status === 409 ? "Not accepted, the note was left as it is: " : "Not accepted: ";
    toast(refused + err.message, true, err.status === 409 ? 12000 : 6000);
    return;
  }
  const a = data.accepted;
  toast(`Accepted into ${a.path.split("/").pop()} at line ${a.line}, column ${a.column}${a.relocated ? " (the point had moved)" : ""}`);
  await refreshTree().catch(() => null);
  if (S.nodes.has(id)) await select(id);
}

async function pickIndex(i) {
  const kids = children(S.sel);
  if (i < kids.length) await pick(kids[i].id);
}

async function regenerate(id = S.sel) {
  await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(id)}/regenerate`, {}));
}

async function toggleBookmark(id = S.sel) {
  const node = S.nodes.get(id);
  const data = await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(id)}/bookmark`, { on: !node.bookmarked }));
  if (data) {
    putNode(data.node);
    render();
  }
}

async function prune(id = S.sel) {
  const node = S.nodes.get(id);
  if (!node || !node.parent_id) return toast("the root cannot be pruned", true);
  const undo = node.status === "pruned";
  const data = await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(id)}/prune`, { pruned: !undo }));
  if (!data) return;
  putNode(data.node);
  if (id === S.sel && !undo && !S.showPruned) await select(node.parent_id);
  else render();
}

// Forgetting is for good: the text leaves the store, the memory index and the sidecars.
async function forget(id = S.sel) {
  const node = S.nodes.get(id);
  if (!node) return;
  const root = !node.parent_id;
  const what = root ? "this whole tree" : "this node (what was below it moves up to its parent)";
  if (!window.confirm(`Forget ${what} for good? It leaves the store, memory and sidecars.`)) return;
  const path = root ? `/api/trees/${encodeURIComponent(node.tree_id)}/forget` : `/api/nodes/${encodeURIComponent(id)}/forget`;
  const data = await attempt(() => api("POST", path, {}));
  if (!data) return;
  toast(data.lines.join(" · "));
  await afterForgetting(data.tree_ids, root ? null : node.parent_id);
}

// Nodes or trees were forgotten (here or by anyone): drop them from the page.
async function afterForgetting(treeIds, goTo) {
  await loadTrees();
  if (treeIds.includes(S.treeId)) {
    const next = S.trees[0];
    if (next) await openTree(next.id);
    else {
      S.treeId = null;
      $("#doc").hidden = true;
      $("#empty").hidden = false;
    }
  } else if (S.treeId) {
    await openTree(S.treeId, goTo || S.sel);
  }
}

let editing = null;
function openEdit(id = S.sel) {
  const node = S.nodes.get(id);
  if (!node) return;
  editing = id;
  $("#edit-text").value = node.text;
  $("#edit-note").textContent =
    node.author.kind === "model" && node.parent_id
      ? "Model text is kept: your edit becomes a new node of yours beside it, and is picked."
      : "Your own text: the earlier version is kept as a revision.";
  $("#edit-dialog").showModal();
  $("#edit-text").focus();
}

async function saveEdit() {
  const text = $("#edit-text").value;
  const data = await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(editing)}/edit`, { text }));
  if (!data) return;
  $("#edit-dialog").close();
  putNode(data.node);
  S.details.delete(data.node.id);
  const offering = data.created && S.auto ? regenerate(data.node.id) : null;
  await select(data.node.id);
  await offering;
}

async function newDocument(text, title = "") {
  if (!text.trim()) return toast("type or paste some text first", true);
  const data = await attempt(() => api("POST", "/api/trees", { text, title }));
  if (!data) return false;
  await loadTrees();
  await openTree(data.tree.id, data.root.id);
  return true;
}

async function compose() {
  const box = $("#compose");
  const text = box.value;
  if (!text.trim()) return;
  const data = await attempt(() => api("POST", `/api/nodes/${encodeURIComponent(S.sel)}/children`, { text, offer: S.auto }));
  if (!data) return;
  box.value = "";
  putNode(data.node);
  await select(data.node.id);
}

function toggleProvenance(id = S.sel) {
  S.panelFor = S.panelFor === id ? null : id;
  if (S.panelFor && !S.details.has(S.panelFor)) attempt(() => fetchDetails(S.panelFor)).then(scheduleRender);
  render();
}

function move(kind) {
  const node = currentNode();
  if (!node) return;
  if (kind === "parent" && node.parent_id) return select(node.parent_id);
  if (kind === "child") {
    const kids = children(node.id);
    const remembered = S.lastChild.get(node.id);
    const next = kids.find((k) => k.id === remembered) || kids.find((k) => k.status === "picked") || kids[0];
    if (next) return select(next.id);
  }
  if ((kind === "prev" || kind === "next") && node.parent_id) {
    const sibs = children(node.parent_id, S.showPruned || node.status === "pruned");
    const i = sibs.findIndex((s) => s.id === node.id) + (kind === "next" ? 1 : -1);
    if (i >= 0 && i < sibs.length) return select(sibs[i].id);
  }
  return undefined;
}

// ---------------------------------------------------------------- search
async function search(query) {
  const box = $("#search-results");
  box.hidden = false;
  box.replaceChildren(el("div", "search-empty", "searching…"));
  let data;
  try {
    data = await api("GET", `/api/search?q=${encodeURIComponent(query)}&k=8`);
  } catch (err) {
    box.replaceChildren(el("div", "search-empty", err.message));
    return;
  }
  box.replaceChildren();
  if (!data.results.length) box.append(el("div", "search-empty", "nothing close in meaning yet"));
  for (const r of data.results) {
    const b = el("button", "result");
    b.dataset.tree = r.tree_id;
    b.dataset.node = r.node_id;
    b.append(el("span", "snippet", preview(r.text, 180)));
    b.append(el("span", "meta", `${r.tree_title || "untitled"} · ${r.status || ""} · score ${r.score.toFixed(3)}`));
    box.append(b);
  }
}

async function openNode(treeId, nodeId) {
  $("#search-results").hidden = true;
  if (treeId === S.treeId && S.nodes.has(nodeId)) return select(nodeId);
  await attempt(() => openTree(treeId, nodeId));
  return undefined;
}

// --------------------------------------------------------------- live events
const handlers = {
  hello(d) {
    S.sources = {};
    for (const [name, src] of Object.entries(d.sources || {})) {
      if (src.restarts > 0 || src.state === "restarting") S.sources[name] = { name, ...src };
    }
    renderSources();
  },
  source_status(d) {
    S.sources = { ...(S.sources || {}), [d.name]: d };
    renderSources();
    if (d.state === "restarting") toast(`source ${d.name} crashed (${d.last_error}); restarting`, true);
  },
  offer_started(d) {
    S.streams.set(d.offer_id, { ...d, branches: Array.from({ length: d.n }, () => []) });
    if (d.tree_id === S.treeId) scheduleRender();
    else renderActivity();
  },
  token(d) {
    const stream = S.streams.get(d.offer_id);
    if (!stream) return;
    stream.branches[d.branch].push(d);
    const target = document.querySelector(`[data-stream="${d.offer_id}:${d.branch}"]`);
    if (target) target.append(tokenSpan(d));
  },
  offer_done(d) {
    finishStream(d);
  },
  offer_failed(d) {
    toast(`sampling failed: ${d.error}`, true);
    finishStream(d);
  },
  picked(d) {
    if (d.node.tree_id !== S.treeId) return;
    for (const id of d.path || [d.node.id]) {
      const n = S.nodes.get(id);
      if (n) S.nodes.set(id, { ...n, status: "picked" });
    }
    putNode(d.node);
    scheduleRender();
  },
  node_created(d) {
    if (d.node.tree_id === S.treeId) {
      putNode(d.node);
      scheduleRender();
    } else if (!S.trees.some((t) => t.id === d.node.tree_id)) {
      loadTrees().catch(() => null);
    }
  },
  tree_updated(d) {
    if (d.tree.id !== S.treeId) return;
    S.tree = d.tree;
    renderPersonal();
  },
  node_updated(d) {
    if (d.node.tree_id !== S.treeId) return;
    putNode(d.node);
    scheduleRender();
  },
  forgotten(d) {
    if (d.tree_ids.includes(S.treeId) || d.node_ids.some((id) => S.nodes.has(id))) {
      afterForgetting(d.tree_ids, null).catch(() => null);
    } else if (d.tree_ids.length) loadTrees().catch(() => null);
  },
  note_changed(d) {
    if (d.tree_id === S.treeId) refreshTree().catch(() => null);
    else if (!S.trees.some((t) => t.id === d.tree_id)) loadTrees().catch(() => null);
  },
  note_accepted(d) {
    if (S.nodes.has(d.node_id)) refreshTree().catch(() => null);
  },
  transcript(d) {
    showTranscript(d);
  },
  speech_status(d) {
    if (!Mic.session || d.session !== Mic.session) return;
    $("#transcript-state").textContent = d.message || d.state;
    if (d.state === "error" || d.state === "warning") toast(`speech: ${d.message}`, true);
  },
  error(d) {
    toast(d.message, true, 8000);
    if (Mic.active && /^speech is off/.test(d.message)) stopMic(false);
  },
};

// ------------------------------------------------------------------ speech
// The microphone streams 16 kHz 16-bit mono PCM (100 ms a frame) over the event socket:
// {"type": "speech_start", ...}, binary frames, {"type": "speech_stop", ...}. An AudioWorklet
// (static/mic-worklet.js) downsamples on the audio thread and posts each frame here.
const Mic = { active: false, starting: false, session: null, stream: null, ctx: null, node: null, source: null, committed: "", opened: false };
const RATE = 16000;

function sendJSON(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function speechStart() {
  sendJSON({ type: "speech_start", session: Mic.session, sample_rate: RATE });
}

async function startMic() {
  if (Mic.active || Mic.starting) return undefined;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return toast("this browser cannot use a microphone here", true);
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx || !window.AudioWorkletNode) return toast("this browser cannot process microphone audio (no AudioWorklet)", true);
  Mic.starting = true;
  try {
    return await openMic(Ctx);
  } finally {
    Mic.starting = false;
  }
}

async function openMic(Ctx) {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  } catch (err) {
    return toast(`no microphone: ${err.message}`, true);
  }
  const ctx = new Ctx();
  let node;
  try {
    await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    // No outputs: the node is pulled by the audio thread without being connected to the speakers.
    const mono = { channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers" };
    node = new AudioWorkletNode(ctx, "mic-frames", { numberOfInputs: 1, numberOfOutputs: 0, ...mono });
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close().catch(() => null);
    return toast(`the microphone cannot start: ${err.message}`, true);
  }
  node.port.onmessage = (e) => {
    if (Mic.node === node && socket && socket.readyState === WebSocket.OPEN) socket.send(e.data);
  };
  const source = ctx.createMediaStreamSource(stream);
  source.connect(node);
  if (ctx.state === "suspended") ctx.resume().catch(() => null);
  Object.assign(Mic, { active: true, stream, ctx, node, source, committed: "", opened: false });
  Mic.session = `browser-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  speechStart();
  $("#transcript-text .committed").textContent = "";
  $("#transcript-text .tentative").textContent = "";
  $("#transcript-state").textContent = "listening…";
  $("#transcript").hidden = false;
  const button = $("#mic");
  button.setAttribute("aria-pressed", "true");
  button.querySelector(".mic-label").textContent = "Stop"; // the icon follows aria-pressed (style.css)
  return undefined;
}

function stopMic(tellServer = true) {
  if (!Mic.active) return;
  if (tellServer) sendJSON({ type: "speech_stop", session: Mic.session });
  Mic.node.port.onmessage = null;
  Mic.source.disconnect();
  Mic.stream.getTracks().forEach((t) => t.stop());
  Mic.ctx.close().catch(() => null);
  Object.assign(Mic, { active: false, stream: null, ctx: null, node: null, source: null });
  $("#transcript-state").textContent = "stopped: the transcript is kept in its tree";
  const button = $("#mic");
  button.setAttribute("aria-pressed", "false");
  button.querySelector(".mic-label").textContent = "Speak";
}

function toggleMic() {
  return Mic.active ? stopMic() : startMic();
}

function showTranscript(d) {
  if (!Mic.session || d.session !== Mic.session) return;
  Mic.committed += d.committed.map((c) => c.text).join("");
  $("#transcript").hidden = false;
  $("#transcript-text .committed").textContent = Mic.committed.trim();
  $("#transcript-text .tentative").textContent = d.tentative ? " " + d.tentative : "";
  if (d.tree_id && !Mic.opened) {
    // The first transcript stored: show its tree, where the offers at each pause will appear.
    Mic.opened = true;
    loadTrees()
      .then(() => openTree(d.tree_id, d.node_id))
      .catch(() => (Mic.opened = false));
  }
}

function finishStream(d) {
  if (d.offer_id || (d.offer && d.offer.id)) S.streams.delete(d.offer_id || d.offer.id);
  if (d.offer) S.offers.set(d.offer.id, d.offer);
  if (d.offer && d.offer.tree_id === S.treeId) (d.nodes || []).forEach(putNode);
  scheduleRender();
}

let socket = null;
let retry = 500;
const UNAUTHORIZED = 4401; // the daemon's close code for a missing or wrong token
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}/api/events`);
  const conn = $("#conn");
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "auth", token: TOKEN })); // first: nothing comes before it
    retry = 500;
    conn.className = "conn on";
    conn.title = "connected";
    S.streams.clear();
    refreshTree().catch(() => null);
    if (Mic.active) speechStart(); // a new socket: the same session goes on
  };
  socket.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    const handle = handlers[event.type];
    if (handle) handle(event.data);
  };
  socket.onclose = (e) => {
    const why = e.reason ? `${e.reason} (${e.code})` : "";
    conn.className = "conn off";
    if (e.code === UNAUTHORIZED) {
      conn.title = `disconnected: ${why}`;
      toast(`Not connected: ${e.reason}`, true, 60000);
      return; // the same token would be refused again
    }
    conn.title = why ? `disconnected: ${why}; reconnecting…` : "disconnected: reconnecting…";
    if (why) toast(`Connection closed: ${why}; reconnecting…`, true);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  };
}

// ---------------------------------------------------------------- wiring
function typing(target) {
  return target instanceof HTMLElement && (target.matches("input, textarea, select") || target.isContentEditable);
}

const KEYS = {
  ArrowUp: () => move("parent"),
  k: () => move("parent"),
  ArrowDown: () => move("child"),
  j: () => move("child"),
  ArrowLeft: () => move("prev"),
  h: () => move("prev"),
  ArrowRight: () => move("next"),
  l: () => move("next"),
  r: () => regenerate(),
  b: () => toggleBookmark(),
  x: () => prune(),
  e: () => openEdit(),
  p: () => toggleProvenance(),
  n: () => openNew(),
  a: () => accept(),
  m: () => toggleMic(),
  "?": () => $("#help-dialog").showModal(),
  "/": () => $("#search").focus(),
};

function onKey(e) {
  if (e.ctrlKey && e.key === "Enter") {
    if (e.target.id === "compose") compose();
    else if (e.target.id === "first-text") newDocument($("#first-text").value);
    else if (e.target.id === "new-text") submitNew();
    else if (e.target.id === "edit-text") saveEdit();
    return;
  }
  if (e.key === "Escape") {
    $("#search-results").hidden = true;
    if (typing(e.target)) e.target.blur();
    return;
  }
  if (typing(e.target) || e.altKey || e.ctrlKey || e.metaKey || document.querySelector("dialog[open]")) return;
  if (!S.tree && e.key !== "/" && e.key !== "n" && e.key !== "?" && e.key !== "m") return;
  if (/^[1-9]$/.test(e.key)) {
    e.preventDefault();
    pickIndex(Number(e.key) - 1);
    return;
  }
  const action = KEYS[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
}

function openNew() {
  $("#new-text").value = "";
  $("#new-title").value = "";
  $("#new-dialog").showModal();
  $("#new-text").focus();
}

async function submitNew() {
  if (await newDocument($("#new-text").value, $("#new-title").value)) $("#new-dialog").close();
}

function onClick(e) {
  const target = e.target instanceof Element ? e.target : null;
  if (!target) return;
  const closer = target.closest("[data-close]");
  if (closer) return closer.closest("dialog").close();
  const frag = target.closest(".frag, .result");
  if (frag) return openNode(frag.dataset.tree, frag.dataset.node);
  if (!target.closest(".search")) $("#search-results").hidden = true;
  const button = target.closest("button[data-act]");
  const card = target.closest(".card[data-id]");
  const id = card ? card.dataset.id : S.sel;
  if (button) return act(button.dataset.act, id);
  if (card) return pick(card.dataset.id);
  const seg = target.closest(".seg, .tn, .bookmarks li");
  if (seg && seg.dataset.id) return select(seg.dataset.id);
  return undefined;
}

function act(action, id) {
  const actions = {
    pick: () => pick(id),
    edit: () => openEdit(id),
    bookmark: () => toggleBookmark(id),
    prune: () => prune(id),
    forget: () => forget(id),
    provenance: () => toggleProvenance(id),
    regenerate: () => regenerate(id),
    accept: () => accept(id),
  };
  return actions[action] && actions[action]();
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("ambient.theme", theme);
}

function wire() {
  document.addEventListener("keydown", onKey);
  document.addEventListener("click", onClick);
  document.addEventListener("mouseover", (e) => {
    const span = e.target instanceof Element ? e.target.closest(".heat .tok") : null;
    if (span) showTokenCard(span);
    else $("#tokencard").hidden = true;
  });
  $("#tree-select").addEventListener("change", (e) => attempt(() => openTree(e.target.value)));
  $("#new-doc").addEventListener("click", openNew);
  $("#mic").addEventListener("click", toggleMic);
  $("#new-go").addEventListener("click", submitNew);
  $("#edit-go").addEventListener("click", saveEdit);
  $("#first-go").addEventListener("click", () => newDocument($("#first-text").value));
  $("#compose-go").addEventListener("click", compose);
  $("#panel-close").addEventListener("click", () => toggleProvenance(S.panelFor));
  $("#help-btn").addEventListener("click", () => $("#help-dialog").showModal());
  $("#theme").addEventListener("click", () => setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));
  $("#search").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.value.trim()) search(e.target.value.trim());
  });
  $("#show-pruned").addEventListener("change", (e) => {
    S.showPruned = e.target.checked;
    render();
  });
  const heat = $("#heat");
  heat.checked = S.heat;
  heat.addEventListener("change", (e) => {
    S.heat = e.target.checked;
    localStorage.setItem("ambient.heat", S.heat ? "1" : "0");
    render();
  });
  $("#heat-kind").addEventListener("change", (e) => {
    S.heatKind = e.target.value;
    localStorage.setItem("ambient.heatKind", S.heatKind);
    render();
  });
  $("#personal").addEventListener("change", (e) => setPersonal(e.target.checked));
  const auto = $("#auto");
  auto.checked = S.auto;
  auto.addEventListener("change", (e) => {
    S.auto = e.target.checked;
    localStorage.setItem("ambient.auto", S.auto ? "1" : "0");
  });
}

async function start() {
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  setTheme(localStorage.getItem("ambient.theme") || (dark ? "dark" : "light"));
  wire();
  const hash = new URLSearchParams(location.hash.slice(1));
  try {
    await loadTrees();
  } catch (err) {
    toast(err.message, true);
    return;
  }
  loadAdapter().catch(() => null);
  const wanted = hash.get("t");
  if (wanted && S.trees.some((t) => t.id === wanted)) await attempt(() => openTree(wanted, hash.get("n")));
  else if (S.trees.length) await attempt(() => openTree(S.trees[0].id));
  else {
    $("#empty").hidden = false;
    $("#first-text").focus();
  }
  connect();
}

document.addEventListener("DOMContentLoaded", start);
