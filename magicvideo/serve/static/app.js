"use strict";
// The studio page: plain JS over the HTTP API of magicvideo/serve/app.py (what the page does,
// a script can do). User text only ever reaches the page as textContent, never as HTML.

const $ = (id) => document.getElementById(id);
const STAGES = ["keyframes", "interpolation", "decoding", "super-resolution"];
const FINISHED = ["done", "failed", "cancelled"];
const token = readToken();
let info = null;     // GET /api/info
let current = null;  // id of the job the panel follows
let events = null;   // its EventSource

// A token given once as /?token=... is kept in this browser and taken out of the address bar.
function readToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given !== null) {
    localStorage.setItem("magicvideo-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return localStorage.getItem("magicvideo-token") || "";
}

// EventSource and <video> cannot send headers: their URLs carry the token.
function withToken(path) {
  return token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new Error(`the server cannot be reached (${err.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    let detail = body && body.detail;
    if (typeof detail !== "string") detail = detail ? JSON.stringify(detail) : `${response.status} ${response.statusText}`;
    if (response.status === 401) detail += " (open this page once as /?token=YOUR_TOKEN)";
    throw new Error(detail);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key in node && typeof value !== "string") node[key] = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) { $("error").textContent = message; $("error").hidden = false; }
function hideError() { $("error").hidden = true; $("error").textContent = ""; }

function kind() { return document.querySelector("input[name=kind]:checked").value; }

function showKind() {
  const k = kind();
  $("source-row").hidden = k === "generate";
  $("source-label").textContent = k === "animate" ? "Image" : "Source video";
  $("source").accept = k === "animate" ? "image/*" : "video/*,.gif";
  $("strength-row").hidden = !(k === "vary" || k === "edit");
  $("frames-field").hidden = !(k === "generate" || k === "animate");
  $("anchor-field").hidden = k !== "animate";
  $("prompt").disabled = k === "vary";
  $("prompt-label").textContent = {generate: "Prompt", animate: "Prompt (optional)", edit: "New prompt",
                                   vary: "Prompt (none: the source video is the condition)"}[k];
  if (info) {
    const d = info.defaults;
    $("guidance").placeholder = String(k === "animate" || k === "vary" ? d.image_guidance : d.guidance);
    $("fps").placeholder = k === "vary" || k === "edit" ? "source's" : String(d.fps);
    $("strength").placeholder = String(k === "vary" ? d.vary_strength : d.edit_strength);
  }
}

async function loadInfo() {
  info = await api("/api/info");
  const d = info.defaults;
  const select = $("scheduler");
  select.replaceChildren(el("option", { value: "" }, `default (${d.scheduler})`),
                         ...info.schedulers.map((name) => el("option", { value: name }, name)));
  $("steps").placeholder = String(d.steps);
  for (const [id, stage] of [["interpolate", "interpolation"], ["upscale", "super-resolution"]]) {
    const has = info.stages[stage];
    $(id).checked = has;
    $(id).disabled = !has;
    $(id).parentElement.title = has ? "" : `this pipeline has no ${stage} stage`;
  }
  const stages = ["keyframes", ...Object.keys(info.stages).filter((s) => info.stages[s])];
  $("pipeline-info").textContent = `${info.frame_size}px keyframes, ${info.max_frames} per window; stages: ` +
    `${stages.join(", ")}; queue ${info.limits.queue}; uploads up to ` +
    `${(info.limits.upload_bytes / 2 ** 20).toFixed(0)} MB`;
  showKind();
}

function formData() {
  const k = kind();
  const data = new FormData();
  data.append("kind", k);
  const prompt = $("prompt").value;
  if (k === "generate" || k === "edit" || (k === "animate" && prompt.trim() !== "")) data.append("prompt", prompt);
  const fields = ["seed", "fps", "steps", "guidance", "scheduler"];
  if (k === "generate" || k === "animate") fields.push("num_frames");
  if (k === "vary" || k === "edit") fields.push("strength");
  for (const name of fields) {
    const value = $(name).value;
    if (value !== "") data.append(name, value);
  }
  if (k === "animate") data.append("anchor", $("anchor").checked ? "true" : "false");
  for (const name of ["interpolate", "upscale"]) {
    if (!$(name).disabled) data.append(name, $(name).checked ? "true" : "false");
  }
  if (k !== "generate" && $("source").files.length) data.append("source", $("source").files[0]);
  return data;
}

async function submit(event) {
  event.preventDefault();
  hideError();
  $("generate").disabled = true;
  try {
    track(await api("/api/jobs", { method: "POST", body: formData() }));
  } catch (err) {
    showError(err.message);
  } finally {
    $("generate").disabled = false;
  }
}

// -- the current job ---------------------------------------------------------------------
function track(job) {
  if (events) events.close();
  current = job.id;
  $("job").hidden = false;
  $("result").hidden = true;
  $("job-id").textContent = job.id;
  render(job);
  if (FINISHED.includes(job.status)) { finished(job); return; }
  events = new EventSource(withToken(`/api/jobs/${job.id}/events`));
  events.onmessage = (message) => {
    const snap = JSON.parse(message.data);
    if (snap.id !== current) return;
    render(snap);
    if (FINISHED.includes(snap.status)) {
      events.close();
      events = null;
      finished(snap);
    }
  };
  events.onerror = () => {  // closed for good (not a retry): follow the job by polling instead
    if (events && events.readyState === EventSource.CLOSED) { events = null; poll(job.id); }
  };
}

async function poll(id) {
  while (id === current) {
    let snap;
    try { snap = await api(`/api/jobs/${id}`); } catch (err) { showError(err.message); return; }
    render(snap);
    if (FINISHED.includes(snap.status)) { finished(snap); return; }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function stagesOf(settings) {
  return STAGES.filter((s) => (s !== "interpolation" || settings.interpolate) &&
                              (s !== "super-resolution" || settings.upscale));
}

function statusText(snap) {
  switch (snap.status) {
    case "queued": return `Queued: position ${snap.queue_position} in the queue`;
    case "running": return snap.stage ? `Running: ${snap.stage}, step ${snap.step} of ${snap.total}` : "Running: starting";
    case "done": return `Done in ${(snap.finished - snap.started).toFixed(1)} s`;
    case "cancelled": return "Cancelled";
    default: return `Failed: ${snap.error}`;
  }
}

let shown = null;  // the state on screen: an answer that arrives late never takes an ended job back

function render(snap) {
  if (shown && shown.id === snap.id && FINISHED.includes(shown.status) && !FINISHED.includes(snap.status)) return;
  shown = snap;
  $("status").textContent = statusText(snap);
  const stages = stagesOf(snap.settings);
  const at = snap.status === "done" ? stages.length : stages.indexOf(snap.stage);
  $("stages").replaceChildren(...stages.map((stage, i) =>
    el("li", { class: i < at ? "done" : i === at && snap.status === "running" ? "current" : "" }, stage)));
  const bar = $("bar");
  if (snap.status === "running" && snap.total) { bar.max = snap.total; bar.value = snap.step; }
  else if (snap.status === "done") { bar.max = 1; bar.value = 1; }
  else if (snap.status === "queued") { bar.removeAttribute("value"); }
  $("cancel").disabled = FINISHED.includes(snap.status);
}

function finished(snap) {
  if (snap.status === "done") showResult(snap);
  loadGallery();
}

function showResult(snap) {
  $("result").hidden = false;
  $("video").src = withToken(snap.video);
  $("download").href = withToken(snap.video);
  $("download").download = `magicvideo-${snap.id}.mp4`;
  $("result-settings").textContent = summary(snap.settings);
}

async function cancel() {
  if (!current) return;
  $("cancel").disabled = true;
  try {
    const snap = await api(`/api/jobs/${current}`, { method: "DELETE" });
    // a running job stops at its next step: its event stream brings "cancelled"
    if (snap.status === "running" && !(shown && FINISHED.includes(shown.status))) $("status").textContent = "Cancelling";
    else render(snap);
  } catch (err) {
    showError(err.message);
  }
}

// -- the gallery: every finished job, kept on disk by the server ---------------------------
function summary(s) {
  const parts = [s.kind, `seed ${s.seed}`, `${s.num_frames} frames`, `${s.fps} fps`, `${s.steps} steps`,
                 `guidance ${s.guidance}`, s.scheduler];
  if (s.strength !== undefined && s.strength !== null) parts.push(`strength ${s.strength}`);
  if (s.interpolate) parts.push("interpolated");
  if (s.upscale) parts.push("super-resolved");
  if (s.source) parts.push(`from ${s.source}`);
  return parts.join(" · ");
}

function card(job) {
  const s = job.settings;
  const video = el("video", { src: withToken(job.video), preload: "metadata", muted: true, loop: true,
                              controls: true, playsInline: true });
  const rows = [["kind", s.kind], ["seed", s.seed], ["frames", s.num_frames], ["fps", s.fps], ["steps", s.steps],
                ["guidance", s.guidance], ["scheduler", s.scheduler], ["strength", s.strength],
                ["stages", stagesOf(s).join(", ")], ["source", s.source]];
  const dl = el("dl");
  for (const [key, value] of rows) if (value !== undefined && value !== null) dl.append(el("dt", {}, key), el("dd", {}, String(value)));
  const title = s.prompt ? s.prompt : s.kind === "vary" ? `variation of ${s.source}` : `${s.kind} of ${s.source}`;
  const open = el("a", { href: "#job" }, "show");
  open.addEventListener("click", () => { current = job.id; $("job").hidden = false; $("job-id").textContent = job.id; render(job); showResult(job); });
  return el("div", { class: "card", "data-id": job.id }, video, el("div", { class: "prompt" }, title), dl,
            el("a", { href: withToken(job.video), download: `magicvideo-${job.id}.mp4` }, "download"), " ", open);
}

async function loadGallery() {
  let jobs;
  try { jobs = await api("/api/jobs"); } catch (err) { showError(err.message); return; }
  const done = jobs.filter((j) => j.status === "done");
  $("gallery").replaceChildren(...done.map(card));
  $("gallery-empty").hidden = done.length > 0;
  const others = jobs.filter((j) => j.status === "failed" || j.status === "cancelled");
  $("history").replaceChildren(...others.map((j) => el("li", {},
    `${j.settings.kind} "${j.settings.prompt || j.settings.source || ""}": ${j.status}${j.error ? ` (${j.error})` : ""}`)));
  $("history-details").hidden = others.length === 0;
  if (!current) {  // a reload while a job runs: follow it again
    const active = jobs.find((j) => j.status === "running") || jobs.find((j) => j.status === "queued");
    if (active) track(active);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", showKind);
  $("job-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  showKind();
  loadInfo().catch((err) => showError(err.message));
  loadGallery();
});
