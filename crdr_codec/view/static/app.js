// crdr view: the page's behaviour. Plain JavaScript, no build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  beta: 0,
  request: 0,          // number of the newest image request (older answers are dropped)
  decoded: null,       // the HTMLImageElement of the decoded image at state.beta
  refs: {},            // reference key -> {img, label} (loaded on demand)
  anchors: [],         // anchor results from /api/anchors
  reference: null,     // key of the image compared with: "original", "anchor:avif", "beta:0"
  mode: "side",
  zoom: 2,
  cx: 0, cy: 0,        // centre of the zoomed region, in image pixels
  wipe: 0.5,           // wipe divider position in the detail view (0..1)
  metrics: null,
};

const fmt = {
  int: (n) => n.toLocaleString("en-US"),
  bpp: (x) => x.toFixed(4),
  psnr: (x) => (x === null || x === undefined ? "–" : x.toFixed(2) + " dB"),
  lpips: (x) => (x === null || x === undefined ? "–" : x.toFixed(4)),
  beta: (b) => b.toFixed(2),
};

function setStatus(text) { $("status").textContent = text; }

async function getJSON(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + url));
    img.src = url;
  });
}

// ------------------------------------------------------------------ decoded image
async function showBeta(beta) {
  const req = ++state.request;
  const b = fmt.beta(beta);
  document.body.dataset.state = "loading";
  setStatus(`decoding β = ${b}…`);
  try {
    const res = await fetch(`/api/image?beta=${b}`);
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const blob = await res.blob();
    if (req !== state.request) return;
    const url = URL.createObjectURL(blob);
    const img = await loadImage(url);
    if (req !== state.request) { URL.revokeObjectURL(url); return; }
    const shown = $("decoded");
    const old = shown.src;
    shown.src = url;
    shown.dataset.beta = b;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    state.beta = Number(b);
    state.decoded = img;
    if (state.reference && state.reference.startsWith("beta:")) updateReferenceLabels();
    draw();
    setStatus("");
    document.body.dataset.state = "ready";
    showMetrics(b, req).catch((e) => { $("m-note").textContent = "metrics failed: " + e.message; });
  } catch (e) {
    if (req === state.request) {
      setStatus("error: " + e.message);
      document.body.dataset.state = "error";
    }
  }
}

async function showMetrics(b, req) {
  const info = state.info;
  $("m-bpp").textContent = `${fmt.int(info.bytes)} bytes, ${fmt.bpp(info.bpp)} bpp, q = ${info.q}`;
  if (!info.original) {
    $("m-psnr").textContent = "";
    $("m-lpips").textContent = "";
    $("m-note").textContent = "PSNR and LPIPS need the original: crdr view FILE.crdr ORIGINAL";
    return;
  }
  $("m-psnr").textContent = "PSNR …";
  const m = await getJSON(`/api/metrics?beta=${b}`);
  if (req !== state.request) return;
  state.metrics = m;
  $("m-psnr").textContent = `PSNR ${fmt.psnr(m.psnr)}`;
  $("m-lpips").textContent = m.lpips === null ? "" : `LPIPS ${fmt.lpips(m.lpips)}`;
  $("m-note").textContent = m.note || "";
  renderAnchors();
}

// ------------------------------------------------------------------ references
function referenceChoices() {
  const out = [];
  if (state.info.original) out.push(["original", `original (${state.info.original})`]);
  for (const a of state.anchors) {
    if (a.available) out.push([`anchor:${a.name}`, `${a.label} q=${a.quality}, ${fmt.int(a.bytes)} B`]);
  }
  out.push(["beta:0", "crdr β = 0.00 (most faithful)"]);
  out.push(["beta:5.12", "crdr β = 5.12 (most realistic)"]);
  return out;
}

function referenceUrl(key) {
  if (key === "original") return "/api/original.png";
  if (key.startsWith("anchor:")) return `/api/anchor/${key.slice(7)}.png`;
  return `/api/image?beta=${fmt.beta(Number(key.slice(5)))}`;
}

function updateReferenceLabels() {
  const sel = $("reference");
  const choices = referenceChoices();
  if (!state.reference || !choices.some(([k]) => k === state.reference)) {
    state.reference = choices[0][0];
  }
  sel.replaceChildren(...choices.map(([k, label]) => {
    const o = document.createElement("option");
    o.value = k; o.textContent = label; o.selected = k === state.reference;
    return o;
  }));
}

function referenceLabel(key) {
  const c = referenceChoices().find(([k]) => k === key);
  return c ? c[1] : key;
}

function reference() {
  const key = state.reference;
  if (!key) return null;
  if (!state.refs[key]) {
    state.refs[key] = { img: null };
    loadImage(referenceUrl(key)).then((img) => { state.refs[key].img = img; draw(); },
      () => setStatus(`cannot load ${referenceLabel(key)}`));
  }
  return state.refs[key].img;
}

async function loadAnchors() {
  const info = state.info;
  if (!info.original) {
    $("anchors").hidden = true;
    $("anchor-notes").textContent = "Give the original (crdr view FILE.crdr ORIGINAL) to compare with "
      + "AVIF, WebP and JPEG files of the same size.";
    return;
  }
  if (!info.anchors.length) { $("anchors-panel").hidden = true; return; }
  $("anchor-notes").textContent = `making ${info.anchors.join(", ")} files of at most `
    + `${fmt.int(info.bytes)} bytes…`;
  renderAnchors();
  try {
    const res = await getJSON("/api/anchors");
    state.anchors = res.anchors;
  } catch (e) {
    $("anchor-notes").textContent = "anchors failed: " + e.message;
    return;
  }
  const notes = state.anchors.filter((a) => a.note).map((a) => a.note);
  notes.push(`Each codec at the largest quality whose file is at most ${fmt.int(info.bytes)} bytes `
    + "(the .crdr file's size); PSNR and LPIPS over the whole image.");
  $("anchor-notes").textContent = notes.join(" · ");
  document.body.dataset.anchors = "ready";
  updateReferenceLabels();
  renderAnchors();
}

function renderAnchors() {
  const info = state.info;
  const m = state.metrics || {};
  const rows = [[`crdr β = ${fmt.beta(state.beta)}`, `q = ${info.q}`, info.bytes, info.bpp, m.psnr, m.lpips, "crdr"]];
  for (const a of state.anchors) {
    if (a.available) rows.push([a.label, `quality ${a.quality}${a.fits ? "" : " (lowest)"}`, a.bytes, a.bpp, a.psnr, a.lpips, ""]);
  }
  $("anchors").tBodies[0].replaceChildren(...rows.map(([name, set, bytes, bpp, psnr, lp, cls]) => {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    for (const v of [name, set, fmt.int(bytes), fmt.bpp(bpp), fmt.psnr(psnr), fmt.lpips(lp)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
}

// ------------------------------------------------------------------ zoomed comparison
function viewSize() {
  const w = $("detail-panel").clientWidth || 600;
  return state.mode === "wipe" ? Math.max(128, Math.min(720, w - 4))
                               : Math.max(96, Math.min(400, Math.floor((w - 14) / 2)));
}

function cropRect() {
  const { width: W, height: H } = state.info;
  const z = state.zoom;
  const v = viewSize();
  const cw = Math.min(W, Math.floor(v / z)), ch = Math.min(H, Math.floor(v / z));
  const x0 = Math.max(0, Math.min(W - cw, Math.round(state.cx - cw / 2)));
  const y0 = Math.max(0, Math.min(H - ch, Math.round(state.cy - ch / 2)));
  return { x0, y0, cw, ch, z };
}

function drawCrop(canvas, img, r) {
  canvas.width = r.cw * r.z;
  canvas.height = r.ch * r.z;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  if (img) {
    ctx.drawImage(img, r.x0, r.y0, r.cw, r.ch, 0, 0, r.cw * r.z, r.ch * r.z);
  } else {
    ctx.fillStyle = "#9a9ea6";
    ctx.font = "14px system-ui, sans-serif";
    ctx.fillText("loading…", 10, 22);
  }
}

function draw() {
  if (!state.info) return;
  const r = cropRect();
  const box = $("crop-box");
  box.style.left = (100 * r.x0 / state.info.width) + "%";
  box.style.top = (100 * r.y0 / state.info.height) + "%";
  box.style.width = (100 * r.cw / state.info.width) + "%";
  box.style.height = (100 * r.ch / state.info.height) + "%";
  const ref = reference();
  const ours = `crdr β = ${fmt.beta(state.beta)}`;
  const where = `${r.cw}×${r.ch} at (${r.x0}, ${r.y0}), ${r.z}×`;
  $("overview-cap").textContent = `${ours} · click or drag to choose the zoomed region (${where})`;
  if (state.mode === "side") {
    drawCrop($("left"), state.decoded, r);
    drawCrop($("right"), ref, r);
    $("left-cap").textContent = ours;
    $("right-cap").textContent = referenceLabel(state.reference);
  } else {
    const c = $("wipe");
    drawCrop(c, state.decoded, r);
    const ctx = c.getContext("2d");
    const x = Math.round(state.wipe * c.width);
    if (ref) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, 0, c.width - x, c.height);
      ctx.clip();
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(ref, r.x0, r.y0, r.cw, r.ch, 0, 0, c.width, c.height);
      ctx.restore();
    }
    ctx.fillStyle = "#f0b429";
    ctx.fillRect(x - 1, 0, 2, c.height);
    $("wipe-cap").textContent = `◀ ${ours}  |  ${referenceLabel(state.reference)} ▶  (drag to move the divider)`;
  }
}

function pickRegion(ev) {
  const img = $("decoded");
  const rect = img.getBoundingClientRect();
  if (!rect.width) return;
  state.cx = (ev.clientX - rect.left) * state.info.width / rect.width;
  state.cy = (ev.clientY - rect.top) * state.info.height / rect.height;
  draw();
}

function moveWipe(ev) {
  const rect = $("wipe").getBoundingClientRect();
  state.wipe = Math.max(0, Math.min(1, (ev.clientX - rect.left) / rect.width));
  draw();
}

function dragHandler(el, onMove) {
  el.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    el.setPointerCapture(ev.pointerId);
    onMove(ev);
  });
  el.addEventListener("pointermove", (ev) => { if (ev.buttons & 1) onMove(ev); });
}

// ------------------------------------------------------------------ start
async function start() {
  const info = await getJSON("/api/info");
  state.info = info;
  document.title = `crdr view: ${info.file}`;
  const facts = [`${info.file}`, `${info.width}×${info.height}`, `q = ${info.q}`,
    `${fmt.int(info.bytes)} bytes`, `${fmt.bpp(info.bpp)} bpp`, `model ${info.model_id}`];
  if (!info.realism_trained) facts.push("(these weights were not trained for realism: β has no trained effect)");
  $("file-info").textContent = facts.join(" · ");
  const slider = $("beta");
  slider.min = info.beta_min; slider.max = info.beta_max; slider.step = info.beta_step;
  slider.value = info.initial_beta;
  $("beta-value").textContent = fmt.beta(Number(slider.value));
  state.cx = info.width / 2;
  state.cy = info.height / 2;
  updateReferenceLabels();

  slider.addEventListener("input", () => { $("beta-value").textContent = fmt.beta(Number(slider.value)); });
  slider.addEventListener("change", () => showBeta(Number(slider.value)));  // on release
  $("reference").addEventListener("change", (ev) => { state.reference = ev.target.value; draw(); });
  $("zoom").addEventListener("change", (ev) => { state.zoom = Number(ev.target.value); draw(); });
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", (ev) => {
      state.mode = ev.target.value;
      $("detail").dataset.mode = state.mode;
      draw();
    });
  }
  dragHandler($("overview"), pickRegion);
  dragHandler($("wipe"), moveWipe);
  window.addEventListener("resize", draw);

  await showBeta(Number(slider.value));
  loadAnchors();
}

start().catch((e) => { setStatus("error: " + e.message); document.body.dataset.state = "error"; });
