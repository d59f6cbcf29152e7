// vaetool explore: the page talks to the JSON API in vaetool/explore/app.py; no other assets, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const state = { info: null, z: [], sliders: [], lastImage: null, map: null, mapMethod: "pca", picked: -1,
                decodes: 0, busy: false, dirty: false };

// -- talking to the server -----------------------------------------------------------------------

async function call(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("The explorer's server does not answer (was it stopped?).");
  }
  if (!response.ok) {
    let text = `${response.status} ${response.statusText}`;
    try { text = (await response.json()).error || text; } catch (err) { /* not JSON */ }
    throw new Error(text);
  }
  return response;
}

const postJSON = (url, body) => call(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(body) });

function say(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = kind || "";
  box.hidden = !text;
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function label() {
  return state.info.conditional ? Number($("class-select").value) : null;
}

// -- the decoded image follows the sliders -------------------------------------------------------

// One request in flight at a time; moves made meanwhile are coalesced into the next request, so the
// image keeps up with a fast drag without queueing stale frames.
function redraw() {
  state.dirty = true;
  if (!state.busy) pump();
}

async function pump() {
  state.busy = true;
  while (state.dirty) {
    state.dirty = false;
    const started = performance.now();
    try {
      const body = { z: state.z.slice() };
      if (state.info.conditional) body.label = label();
      const response = await postJSON("/api/decode", body);
      const data = await response.arrayBuffer();
      $("decoded").src = "data:image/png;base64," + base64(data);
      state.decodes += 1;
      document.body.dataset.decodes = String(state.decodes);
      $("latency").textContent = `decoded in ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      say(err.message);
      break;
    }
  }
  state.busy = false;
}

function setZ(z) {
  state.z = z.map(Number);
  for (const s of state.sliders) {
    const value = state.z[s.index];
    const reach = Math.max(s.range, Math.ceil(Math.abs(value)));
    s.input.min = String(-reach);
    s.input.max = String(reach);
    s.input.value = String(value);
    s.output.textContent = value.toFixed(2);
  }
  redraw();
}

function buildSliders(info) {
  const box = $("sliders");
  box.textContent = "";
  state.z = new Array(info.latent_dim).fill(0);
  state.sliders = info.dims.map((dim) => {
    const row = document.createElement("div");
    row.className = "slider";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `z${dim.index}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -dim.range, max: dim.range, step: 0.01, value: 0 });
    input.dataset.dim = String(dim.index);
    input.setAttribute("aria-label", `latent dimension ${dim.index}`);
    const output = document.createElement("output");
    output.textContent = "0.00";
    const about = document.createElement("span");
    about.className = "about";
    const parts = [];
    if (dim.information !== null) parts.push(`${info.information} ${dim.information.toFixed(2)}`);
    if (dim.factor) parts.push(`factor ${dim.factor}`);
    about.textContent = parts.join(" · ");
    input.addEventListener("input", () => {
      state.z[dim.index] = Number(input.value);
      output.textContent = Number(input.value).toFixed(2);
      redraw();
    });
    row.append(name, input, output, about);
    box.append(row);
    return { index: dim.index, range: dim.range, input, output };
  });
  if (info.information === "KL") {
    $("sliders-help").textContent = "Drag a slider to change one latent dimension. They are ordered by their " +
      "average KL on the test images (nats): the most informative first; a KL near 0 means unused.";
  } else if (info.information) {
    $("sliders-help").textContent = "Drag a slider to change one latent dimension; ordered by the variance of " +
      "the test codes, the most used first.";
  }
}

// -- images and drawings set the sliders ---------------------------------------------------------

async function encode(blob) {
  const params = new URLSearchParams();
  if (state.info.conditional) params.set("label", String(label()));
  const response = await call("/api/encode?" + params, { method: "POST", body: blob,
                                                          headers: { "Content-Type": blob.type || "application/octet-stream" } });
  return response.json();
}

async function useImage(blob, what) {
  try {
    const answer = await encode(blob);
    $("seen").src = answer.input;
    state.lastImage = answer.z;
    refreshEndpoints();
    setZ(answer.z);
    say(`The sliders show the posterior mean of ${what}.`, "info");
  } catch (err) {
    say(err.message);
  }
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) useImage(file, file.name);
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) useImage(file, file.name);
  });
}

function setUpDrawing() {
  const canvas = $("draw");
  const pen = canvas.getContext("2d");
  const clear = () => { pen.fillStyle = "#fff"; pen.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    Object.assign(pen, { lineWidth: canvas.width / 12, lineCap: "round", lineJoin: "round", strokeStyle: "#000" });
    pen.beginPath();
    pen.moveTo(...at(event));
    pen.lineTo(...at(event));
    pen.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    canvas.toBlob((blob) => useImage(blob, "your drawing"), "image/png");
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  $("clear").addEventListener("click", clear);
}

// -- interpolation -------------------------------------------------------------------------------

function refreshEndpoints() {
  for (const id of ["from", "to"]) {
    const select = $(id);
    const chosen = select.value;
    select.textContent = "";
    const add = (value, text) => { const o = document.createElement("option"); o.value = value; o.textContent = text; select.append(o); };
    for (const k of state.info.class_means) add(`label:${k}`, `class ${state.info.classes[k] ?? k} (its mean code)`);
    add("sliders", "the sliders, as they are now");
    if (state.lastImage) add("last", "your last image or drawing");
    add("random", "a random z from the prior");
    add("file", "an image file…");
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }
}

function gaussian() {
  const u = 1 - Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

async function endpoint(id) {
  const choice = $(id).value;
  if (choice.startsWith("label:")) return { label: Number(choice.slice(6)) };
  if (choice === "sliders") return { z: state.z.slice() };
  if (choice === "last") return { z: state.lastImage.slice() };
  if (choice === "random") return { z: state.z.map(gaussian) };
  const file = $(`${id}-file`).files[0];
  if (!file) throw new Error(`Choose the image file for "${id}" first.`);
  return { z: (await encode(file)).z };
}

async function interpolate() {
  const button = $("interpolate");
  button.disabled = true;
  try {
    const body = { from: await endpoint("from"), to: await endpoint("to"), steps: Number($("steps").value),
                   method: $("method").value };
    if (state.info.conditional) body.label = label();
    const blob = await (await postJSON("/api/interpolate", body)).blob();
    const url = URL.createObjectURL(blob);
    for (const id of ["gif", "download"]) {
      const element = $(id);
      if (element.dataset.url) URL.revokeObjectURL(element.dataset.url);
      element.dataset.url = url;
      element.hidden = false;
    }
    $("gif").src = url;
    $("download").href = url;
    say("");
  } catch (err) {
    say(err.message);
  } finally {
    button.disabled = false;
  }
}

function setUpInterpolation(info) {
  refreshEndpoints();
  if (info.class_means.length >= 2) {
    $("from").value = `label:${info.class_means[0]}`;
    $("to").value = `label:${info.class_means[1]}`;
  } else {
    $("from").value = "sliders";
    $("to").value = "random";
  }
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => { $(`${id}-file`).hidden = $(id).value !== "file"; });
  }
  $("steps").max = String(info.max_steps);
  for (const m of info.methods) {
    const o = document.createElement("option");
    o.value = m;
    o.textContent = m === "slerp" ? "slerp (keeps typical norms)" : m === "lerp" ? "lerp (straight line)" : m;
    $("method").append(o);
  }
  $("interpolate").addEventListener("click", interpolate);
}

// -- the latent map ------------------------------------------------------------------------------

async function loadMap(method) {
  state.mapMethod = method;
  $("map-pca").classList.toggle("active", method === "pca");
  $("map-tsne").classList.toggle("active", method === "tsne");
  $("map-status").textContent = method === "tsne" ? "computing t-SNE…" : "loading…";
  try {
    state.map = await (await call(`/api/map?method=${method}`)).json();
    state.picked = -1;
    drawMap();
    $("map-status").textContent = `${state.map.method}, ${state.map.points.length} test images`;
  } catch (err) {
    $("map-status").textContent = "";
    say(err.message);
  }
}

function mapFrame() {
  const canvas = $("map");
  const pts = state.map.points;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 12, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  return (p) => [pad + (p[0] - x0) / ((x1 - x0) || 1) * w, pad + (1 - (p[1] - y0) / ((y1 - y0) || 1)) * h];
}

function drawMap() {
  const canvas = $("map");
  const pen = canvas.getContext("2d");
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  const place = mapFrame();
  const labels = state.map.labels;
  state.map.points.forEach((p, i) => {
    const [x, y] = place(p);
    pen.fillStyle = labels ? PALETTE[labels[i] % PALETTE.length] : "#1f77b4";
    pen.globalAlpha = 0.7;
    pen.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  pen.globalAlpha = 1;
  if (state.picked >= 0) {
    const [x, y] = place(state.map.points[state.picked]);
    pen.strokeStyle = "#000";
    pen.lineWidth = 2;
    pen.beginPath();
    pen.arc(x, y, 6, 0, 2 * Math.PI);
    pen.stroke();
  }
  const legend = $("legend");
  legend.textContent = "";
  if (labels) {
    for (const k of [...new Set(labels)].sort((a, b) => a - b)) {
      const item = document.createElement("span");
      const dot = document.createElement("i");
      dot.style.background = PALETTE[k % PALETTE.length];
      item.append(dot, state.info.classes[k] ?? String(k));
      legend.append(item);
    }
  }
}

function setUpMap(info) {
  if (info.map) {  // why there is no map
    $("map").hidden = true;
    $("map-pca").hidden = $("map-tsne").hidden = true;
    $("map-status").textContent = info.map;
    return;
  }
  $("map-pca").addEventListener("click", () => loadMap("pca"));
  $("map-tsne").addEventListener("click", () => loadMap("tsne"));
  $("map").addEventListener("click", (event) => {
    if (!state.map) return;
    const canvas = $("map");
    const box = canvas.getBoundingClientRect();
    const cx = (event.clientX - box.left) * canvas.width / box.width;
    const cy = (event.clientY - box.top) * canvas.height / box.height;
    const place = mapFrame();
    let best = -1, bestDistance = 100;  // within 10 px
    state.map.points.forEach((p, i) => {
      const [x, y] = place(p);
      const d = (x - cx) ** 2 + (y - cy) ** 2;
      if (d < bestDistance) { best = i; bestDistance = d; }
    });
    if (best < 0) return;
    state.picked = best;
    drawMap();
    if (state.info.conditional && state.map.labels) $("class-select").value = String(state.map.labels[best]);
    setZ(state.map.codes[best]);
    const name = state.map.labels ? ` (${state.info.classes[state.map.labels[best]] ?? state.map.labels[best]})` : "";
    say(`The sliders show test image ${best}${name}.`, "info");
  });
  loadMap("pca");
}

// -- the page ------------------------------------------------------------------------------------

function showCard(info) {
  const table = $("card");
  for (const [what, value] of info.card) {
    const row = table.insertRow();
    row.insertCell().textContent = what;
    row.insertCell().textContent = value;
  }
  $("model-name").textContent = info.card[0][1];
}

async function start() {
  let info;
  say("Loading the model and encoding its test images…", "info");
  try {
    info = await (await call("/api/model")).json();
  } catch (err) {
    say(err.message);
    return;
  }
  say("");
  state.info = info;
  showCard(info);
  if (info.discrete) {
    $("discrete").textContent = info.discrete;
    $("discrete").hidden = false;
    for (const id of ["decoder-panel", "sliders-panel", "image-panel", "interp-panel", "map-panel"]) $(id).hidden = true;
    document.body.dataset.ready = "true";
    return;
  }
  if (info.conditional) {
    $("class-row").hidden = false;
    info.classes.forEach((name, k) => {
      const o = document.createElement("option");
      o.value = String(k);
      o.textContent = name;
      $("class-select").append(o);
    });
    $("class-select").addEventListener("change", redraw);
  }
  buildSliders(info);
  $("zero").addEventListener("click", () => setZ(state.z.map(() => 0)));
  $("random").addEventListener("click", () => setZ(state.z.map(gaussian)));
  setUpDrop();
  setUpDrawing();
  setUpInterpolation(info);
  setUpMap(info);
  redraw();
  document.body.dataset.ready = "true";
}

start();
