// har serve page: plain JS, no build step, no network beyond this server.
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const SVGNS = "http://www.w3.org/2000/svg";
let selected = null;   // job id shown in the view
let result = null;     // its har.predictions/1 video entry
let shownFor = null;   // job id + status the view was drawn for

const tokenBox = $("token");
tokenBox.value = localStorage.getItem("har-token") || "";
tokenBox.addEventListener("change", () => { localStorage.setItem("har-token", tokenBox.value); refresh(); });
function headers() { return tokenBox.value ? { Authorization: "Bearer " + tokenBox.value } : {}; }
function withToken(url) { return tokenBox.value ? url + "?token=" + encodeURIComponent(tokenBox.value) : url; }
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.detail) || r.status + " " + r.statusText);
  return body;
}
function say(text, bad) { const m = $("message"); m.textContent = text; m.className = bad ? "err" : "muted"; }
function fmt(t) { t = Math.max(0, t || 0); const m = Math.floor(t / 60); return m + ":" + (t - 60 * m).toFixed(1).padStart(4, "0"); }
function el(tag, attrs = {}, text) {
  const svg = ["svg", "rect", "line", "polyline", "text", "title", "g"].includes(tag);
  const e = svg ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// -- submitting ----------------------------------------------------------------
async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("annotate", $("annotate").checked ? "true" : "false");
  say("uploading " + file.name + " …");
  try {
    const job = await api("/v1/jobs", { method: "POST", body: form });
    say(file.name + ": queued");
    selected = job.id; refresh();
  } catch (e) { say(file.name + ": " + e.message, true); }
}
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  for (const f of e.dataTransfer.files) upload(f);
});
$("file").addEventListener("change", (e) => { for (const f of e.target.files) upload(f); e.target.value = ""; });
$("urlform").addEventListener("submit", async (e) => {
  e.preventDefault();
  const url = $("url").value.trim();
  if (!url) return;
  try {
    const job = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url, annotate: $("annotate").checked }) });
    say("URL queued"); $("url").value = ""; selected = job.id; refresh();
  } catch (err) { say(url + ": " + err.message, true); }
});

// -- job list ------------------------------------------------------------------
async function refresh() {
  let jobs;
  try { jobs = (await api("/v1/jobs")).jobs; } catch (e) { say(e.message, true); return; }
  const ul = $("jobs"); ul.replaceChildren();
  for (const j of jobs) {
    const li = el("li", { "data-id": j.id, "data-status": j.status });
    if (j.id === selected) li.classList.add("selected");
    li.append(el("span", { class: "status " + j.status }, j.status + (j.status === "running" ? " " + Math.round(100 * j.progress) + "%" : "")));
    li.append(el("div", { class: "name" }, j.name));
    if (j.top1) li.append(el("div", { class: "muted" }, j.top1));
    if (j.error) li.append(el("div", { class: "err" }, j.error));
    if (j.status === "running" || j.status === "queued") {
      const bar = el("div", { class: "bar" }); const fill = el("div"); fill.style.width = (100 * j.progress) + "%";
      bar.append(fill); li.append(bar);
    }
    li.addEventListener("click", () => { selected = j.id; refresh(); });
    ul.append(li);
  }
  const job = jobs.find((j) => j.id === selected);
  if (job && shownFor !== job.id + job.status) { shownFor = job.id + job.status; show(job); }
}

// -- result view -------------------------------------------------------------------
async function show(job) {
  $("view").hidden = false;
  $("title").textContent = job.name;
  result = null;
  $("timeline").replaceChildren(); $("chart").replaceChildren(); $("legend").replaceChildren(); $("nowlabels").replaceChildren();
  if (live) { live.close(); live = null; }
  if (job.status !== "done") {
    $("summary").textContent = job.status === "failed" ? "failed: " + job.error : job.status + " …";
    $("summary").className = job.status === "failed" ? "err" : "muted";
    if (job.status === "running" || job.status === "queued") follow(job);
    return;
  }
  const doc = await api("/v1/jobs/" + job.id + "/result");
  result = doc.videos[0];
  const top = result.top.slice(0, 3).map((p) => p.label + " " + (100 * p.score).toFixed(1) + "%");
  $("summary").textContent = "top: " + top.join(" · ") + " — " + result.clips.length + " clips, " + fmt(result.duration_s);
  $("summary").className = "";
  const annotated = job.options && job.options.annotate;
  const src = withToken("/v1/jobs/" + job.id + (annotated ? "/annotated.mp4" : "/video"));
  if ($("video").getAttribute("src") !== src) $("video").setAttribute("src", src);
  $("jsonlink").href = withToken("/v1/jobs/" + job.id + "/result");
  $("annlink").href = withToken("/v1/jobs/" + job.id + "/annotated.mp4");
  $("annlink").hidden = !annotated;
  drawTimeline(); drawChart(); updateNow();
}

// while a job runs: its clips as server-sent events (har.events/1)
let live = null;
function follow(job) {
  let n = 0;
  live = new EventSource(withToken("/v1/jobs/" + job.id + "/events"));
  live.addEventListener("clip", (e) => {
    const c = JSON.parse(e.data); n += 1;
    $("summary").textContent = `running: ${n} clips scored, up to ${fmt(c.end_s)}; this clip: ${c.top[0].label} ${(100 * c.top[0].score).toFixed(1)}%`;
  });
  live.addEventListener("video", () => { live.close(); live = null; refresh(); });
  live.onerror = () => { if (live) { live.close(); live = null; } };
}

function duration() {
  const d = result.duration_s || 0;
  const last = result.clips.length ? result.clips[result.clips.length - 1].end_s : 0;
  return Math.max(d, last, 0.001);
}
function colorFor(labels) { const m = {}; labels.forEach((l, i) => m[l] = COLORS[i % COLORS.length]); return m; }
function chartLabels() {
  const labels = result.top.slice(0, 5).map((p) => p.label);
  for (const s of result.segments) if (!labels.includes(s.label)) labels.push(s.label);
  return labels;
}

function drawTimeline() {
  const svg = $("timeline"), W = svg.clientWidth || 700, dur = duration();
  const labels = [...new Set(result.segments.map((s) => s.label))];
  const colors = colorFor(chartLabels());
  const rowH = 18, H = Math.max(1, labels.length) * rowH + 16;
  svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  if (!labels.length) svg.append(el("text", { x: 6, y: 16, fill: "#777" }, "no segment reached the threshold"));
  for (const s of result.segments) {
    const row = labels.indexOf(s.label), x = (s.start_s / dur) * W, w = Math.max(2, ((s.end_s - s.start_s) / dur) * W);
    const r = el("rect", { class: "seg", x, y: row * rowH + 2, width: w, height: rowH - 4, rx: 3, fill: colors[s.label] || "#888",
      "data-label": s.label, "data-start": s.start_s });
    r.append(el("title", {}, `${s.label} ${fmt(s.start_s)}–${fmt(s.end_s)}`));
    r.addEventListener("click", () => { const v = $("video"); v.currentTime = s.start_s; updateNow(); });
    svg.append(r);
    svg.append(el("text", { x: x + 4, y: row * rowH + 14, "font-size": 11, fill: "#fff", "pointer-events": "none" }, s.label));
  }
  svg.append(el("line", { id: "playhead", x1: 0, x2: 0, y1: 0, y2: H, stroke: "#d00", "stroke-width": 2 }));
}

function drawChart() {
  const svg = $("chart"), W = svg.clientWidth || 700, H = 180, pad = 28, dur = duration();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const labels = chartLabels(), colors = colorFor(labels);
  const x = (t) => pad + (t / dur) * (W - pad - 6), y = (p) => H - 18 - p * (H - 30);
  for (const p of [0, 0.5, 1]) {
    svg.append(el("line", { x1: pad, x2: W - 6, y1: y(p), y2: y(p), stroke: "#eee" }));
    svg.append(el("text", { x: 2, y: y(p) + 4, "font-size": 10, fill: "#777" }, p.toFixed(1)));
  }
  svg.append(el("text", { x: pad, y: H - 4, "font-size": 10, fill: "#777" }, "0:00"));
  svg.append(el("text", { x: W - 40, y: H - 4, "font-size": 10, fill: "#777" }, fmt(dur)));
  const legend = $("legend"); legend.replaceChildren();
  for (const label of labels) {
    // each clip's probability of the label (0 where it is outside the clip's top-k)
    const pts = result.clips.map((c) => {
      const hit = c.top.find((p) => p.label === label);
      return `${x((c.start_s + c.end_s) / 2).toFixed(1)},${y(hit ? hit.score : 0).toFixed(1)}`;
    });
    svg.append(el("polyline", { points: pts.join(" "), fill: "none", stroke: colors[label], "stroke-width": 2, "data-label": label }));
    const s = el("span"); const i = el("i"); i.style.background = colors[label]; s.append(i, document.createTextNode(label)); legend.append(s);
  }
  svg.append(el("line", { id: "chartplayhead", x1: pad, x2: pad, y1: 0, y2: H - 18, stroke: "#d00" }));
}

function updateNow() {
  if (!result) return;
  const t = $("video").currentTime || 0, dur = duration();
  const clip = result.clips.find((c) => t >= c.start_s && t < c.end_s) || result.clips[result.clips.length - 1];
  const ol = $("nowlabels"); ol.replaceChildren();
  if (clip) for (const p of clip.top.slice(0, 5)) {
    const li = el("li"); li.append(document.createTextNode(p.label + " "), el("span", { class: "p" }, (100 * p.score).toFixed(1) + "%"));
    ol.append(li);
  }
  $("nowtime").textContent = clip ? `clip ${clip.index + 1}/${result.clips.length}: ${fmt(clip.start_s)}–${fmt(clip.end_s)}` : "";
  const W1 = $("timeline").clientWidth || 700, ph = document.getElementById("playhead");
  if (ph) { const px = (t / dur) * W1; ph.setAttribute("x1", px); ph.setAttribute("x2", px); }
  const W2 = $("chart").clientWidth || 700, cp = document.getElementById("chartplayhead");
  if (cp) { const px = 28 + (t / dur) * (W2 - 34); cp.setAttribute("x1", px); cp.setAttribute("x2", px); }
}
// a format the browser cannot decode (AVI, HEVC, ...): say so instead of a blank player
$("video").addEventListener("error", () => {
  if (!$("video").getAttribute("src") || !result) return;
  say("this browser cannot play " + $("title").textContent + " (" + (result.codec || "its format") +
      "); the timeline and results below are complete", true);
});
$("video").addEventListener("timeupdate", updateNow);
$("video").addEventListener("seeked", updateNow);
window.addEventListener("resize", () => { if (result) { $("timeline").replaceChildren(); $("chart").replaceChildren(); drawTimeline(); drawChart(); updateNow(); } });

api("/v1/models").then((m) => { $("model").textContent = "model: " + m.loaded.name + " (" + m.loaded.backend + ")"; }).catch(() => {});
refresh();
setInterval(refresh, 1000);
