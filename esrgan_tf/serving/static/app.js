// esrgan-serve's page: upscales images tile by tile through the TF Serving REST API of this
// server (GET /v1/models/NAME, GET .../metadata, POST ...:predict with the `upscale_bytes`
// signature: PNG in, PNG out, base64 in JSON), like `esrgan-upscale --server` does over gRPC.
// A multi-head model (one trunk, several outputs) has `upscale_<head>_bytes` per head: the
// Head menu picks one; "default" is the model's default head (`upscale_bytes`).
/* global CompareViewer */
"use strict";

const SIGNATURE = "upscale_bytes";
const HEAD_SIGNATURE = /^upscale_([a-z][a-z0-9_]*)_bytes$/;
// Input pixels of context on each side of a tile (esrgan-upscale's default --tile_overlap 16).
// Tiles are pasted with a hard cut in the middle of each overlap, the `blend = 0` case measured
// in esrgan_tf/tiling.py (0.25 dB below its cross-fade on a trained model, no visible seam).
const OVERLAP = 16;
const MIN_TILE = 32;
const PARALLEL_REQUESTS = 2;
// The page's own limit: Chromium refuses canvases above 268 M pixels, and the output, its PNG
// and the bicubic canvas are all held in memory; larger images belong to `esrgan-upscale`.
const MAX_OUTPUT_PIXELS = 64 * 1024 * 1024;
const BUSY_RETRIES = 4;

const $ = (id) => document.getElementById(id);
const page = {
  model: document.querySelector('meta[name="esrgan-model"]').content,
  versions: [],
  version: null,
  job: null,
  viewer: null,
  urls: [],
};

class PageError extends Error {}

// --- messages in plain words ----------------------------------------------------------------

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function explainHttp(status, message) {
  if (status === 429) {
    return "The server is busy (it is already running as many requests as it allows). " +
      "Try again in a moment.";
  }
  if (status === 400 && /pixels|exceeds|limit/i.test(message)) {
    return `The server refused a tile as too large for its limits (${message}). ` +
      "Choose a smaller tile size.";
  }
  if (status === 400 && /image|decode|format/i.test(message)) {
    return `The server could not read the image: ${message}`;
  }
  if (status === 404) return `Not found on this server: ${message}`;
  if (status >= 500) return `The server failed (HTTP ${status}): ${message}`;
  return `The server refused the request (HTTP ${status}): ${message}`;
}

// fetch() → parsed JSON, or a PageError in plain words.
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new PageError(`Cannot reach the server at ${location.origin}: is esrgan-serve ` +
      "still running?");
  }
  let body = {};
  try {
    body = await response.json();
  } catch (e) {
    if (e.name === "AbortError") throw e;  // cancelled while the answer was arriving
    throw new PageError(`The server answered HTTP ${response.status} with something that is ` +
      "not JSON.");
  }
  if (!response.ok) {
    const error = new PageError(explainHttp(response.status, body.error || ""));
    error.status = response.status;
    throw error;
  }
  return body;
}

// --- model and version ------------------------------------------------------------------------

function modelPath(suffix = "") {
  const name = encodeURIComponent(page.model);
  const version = $("version").value;
  return `/v1/models/${name}` + (version ? `/versions/${version}` : "") + suffix;
}

async function loadModel() {
  clearError();
  const select = $("version");
  select.replaceChildren();
  $("model-info").textContent = "";
  $("head-label").hidden = true;
  try {
    const status = await api(`/v1/models/${encodeURIComponent(page.model)}`).catch((e) => {
      if (e.status === 404) {
        throw new PageError(`This server has no model named "${page.model}".`);
      }
      throw e;
    });
    const available = (status.model_version_status || [])
      .filter((v) => v.state === "AVAILABLE").map((v) => Number(v.version))
      .sort((a, b) => b - a);
    if (!available.length) {
      throw new PageError(`Model "${page.model}" has no version ready yet.`);
    }
    select.append(new Option(`latest (${available[0]})`, ""));
    for (const v of available) select.append(new Option(String(v), String(v)));
    await checkSignature();
  } catch (e) {
    showError(e instanceof PageError ? e.message : `Unexpected error: ${e}`);
  }
}

// The signature the chosen head answers on ("" = the default head).
function signatureName() {
  const head = $("head").value;
  return head ? `upscale_${head}_bytes` : SIGNATURE;
}

// Fills the Head menu from the signatures (hidden for single-output models), keeping the
// choice when the new version still has that head.
function showHeads(signatures) {
  const select = $("head");
  const chosen = select.value;
  const heads = Object.keys(signatures).map((name) => HEAD_SIGNATURE.exec(name))
    .filter((match) => match).map((match) => match[1]).sort();
  select.replaceChildren(new Option("default", ""));
  for (const head of heads) select.append(new Option(head, head));
  select.value = heads.includes(chosen) ? chosen : "";
  $("head-label").hidden = heads.length === 0;
}

function showSignature(version) {
  $("model-info").textContent = `version ${version}, signature ${signatureName()}`;
}

async function checkSignature() {
  const metadata = await api(modelPath("/metadata"));
  const signatures = metadata.metadata.signature_def.signature_def || {};
  if (!(SIGNATURE in signatures)) {
    throw new PageError(`Model "${page.model}" has no "${SIGNATURE}" signature (it has ` +
      `${Object.keys(signatures).join(", ")}); export it with esrgan-export.`);
  }
  showHeads(signatures);
  page.version = metadata.model_spec.version;
  showSignature(page.version);
}

// --- image helpers ----------------------------------------------------------------------------

async function decodeFile(file) {
  try {
    // Raw pixels: no colour-space conversion, so the server sees what the file holds.
    return await createImageBitmap(file, {colorSpaceConversion: "none",
                                          premultiplyAlpha: "none"});
  } catch (e) {
    throw new PageError(`"${file.name}" is not an image this browser can read (PNG, JPEG, ` +
      "WebP, GIF or BMP); it may be damaged.");
  }
}

function canvasBlob(canvas) {
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new PageError("The browser could not encode a PNG " +
      "(out of memory?)."))), "image/png"));
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// Tile starts along one axis: tiles of `tile` pixels (the whole axis if shorter), spread evenly
// from 0 to length - tile so that neighbours overlap by at least `overlap` (esrgan_tf/tiling.py's
// layout). Each tile keeps [keepFrom, keepTo): the cut is in the middle of each overlap.
function axisTiles(length, tile, overlap) {
  if (length <= tile) return [{start: 0, stop: length, keepFrom: 0, keepTo: length}];
  const count = Math.ceil((length - overlap) / (tile - overlap));
  const starts = [];
  for (let i = 0; i < count; i++) starts.push(Math.round(i * (length - tile) / (count - 1)));
  const tiles = starts.map((start) => ({start, stop: start + tile}));
  for (let i = 0; i < count; i++) {
    tiles[i].keepFrom = i === 0 ? 0 : Math.floor((tiles[i].start + tiles[i - 1].stop) / 2);
  }
  for (let i = 0; i < count; i++) {
    tiles[i].keepTo = i === count - 1 ? length : tiles[i + 1].keepFrom;
  }
  return tiles;
}

// Bicubic ×scale of an ImageData (Keys' cubic with a = -0.5, as MATLAB's imresize and PIL use;
// edge pixels replicated; no antialiasing, which only matters when shrinking). Separable.
function bicubicUpscale(source, scale) {
  const w = source.width, h = source.height, W = w * scale, H = h * scale;
  const kernel = (x) => {
    x = Math.abs(x);
    if (x <= 1) return (1.5 * x - 2.5) * x * x + 1;
    if (x < 2) return ((-0.5 * x + 2.5) * x - 4) * x + 2;
    return 0;
  };
  const taps = (outSize, inSize) => {
    const index = new Int32Array(outSize * 4), weight = new Float32Array(outSize * 4);
    for (let o = 0; o < outSize; o++) {
      const centre = (o + 0.5) / scale - 0.5, first = Math.floor(centre) - 1;
      for (let k = 0; k < 4; k++) {
        index[o * 4 + k] = Math.min(inSize - 1, Math.max(0, first + k));
        weight[o * 4 + k] = kernel(centre - (first + k));
      }
    }
    return {index, weight};
  };
  const tx = taps(W, w), ty = taps(H, h), src = source.data;
  const rows = new Float32Array(h * W * 4);  // Horizontal pass.
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 4; c++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) {
          sum += tx.weight[x * 4 + k] * src[(y * w + tx.index[x * 4 + k]) * 4 + c];
        }
        rows[(y * W + x) * 4 + c] = sum;
      }
    }
  }
  const out = new ImageData(W, H);  // Vertical pass; Uint8ClampedArray rounds and clips.
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 4; c++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) {
          sum += ty.weight[y * 4 + k] * rows[(ty.index[y * 4 + k] * W + x) * 4 + c];
        }
        out.data[(y * W + x) * 4 + c] = sum;
      }
    }
  }
  return out;
}

// --- one image --------------------------------------------------------------------------------

async function predictTile(canvas, signal, signature) {
  const png = await (await canvasBlob(canvas)).arrayBuffer();
  const body = JSON.stringify({signature_name: signature, instances: [{b64: toBase64(png)}]});
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await api(modelPath(":predict"), {
        method: "POST", body, signal, headers: {"Content-Type": "application/json"}});
      const bytes = fromBase64(answer.predictions[0].b64);
      return await createImageBitmap(new Blob([bytes], {type: "image/png"}),
                                     {colorSpaceConversion: "none", premultiplyAlpha: "none"});
    } catch (e) {
      if (e.status !== 429 || attempt >= BUSY_RETRIES) throw e;
      // Busy: back off 0.5, 1, 2, 4 s (the server refuses rather than queues over --max_inflight).
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
      if (signal.aborted) throw new DOMException("cancelled", "AbortError");
    }
  }
}

async function upscaleFile(file, job) {
  const started = performance.now();
  // One head for the whole image, even if the menu changes meanwhile.
  const head = $("head").value, signature = signatureName();
  const bitmap = await decodeFile(file);
  const w = bitmap.width, h = bitmap.height;
  const tile = Math.max(MIN_TILE, Math.round(Number($("tile").value) || 128));
  // Small tiles keep a quarter of their side as context so that each still advances.
  const overlap = Math.min(OVERLAP, Math.floor(tile / 4));
  const rows = axisTiles(h, tile, overlap), cols = axisTiles(w, tile, overlap);
  const cells = [];
  for (const r of rows) for (const c of cols) cells.push({r, c});
  job.total = cells.length;
  job.done = 0;
  updateProgress(job);
  let scale = null, output = null, outputContext = null;
  let next = 0;
  const worker = async () => {
    const crop = document.createElement("canvas");
    while (next < cells.length && !job.controller.signal.aborted) {
      const {r, c} = cells[next++];
      crop.width = c.stop - c.start;
      crop.height = r.stop - r.start;
      const context = crop.getContext("2d");
      context.clearRect(0, 0, crop.width, crop.height);
      context.drawImage(bitmap, c.start, r.start, crop.width, crop.height,
                        0, 0, crop.width, crop.height);
      const result = await predictTile(crop, job.controller.signal, signature);
      const s = result.width / crop.width;
      if (!Number.isInteger(s) || s < 1 || result.height !== s * crop.height) {
        throw new PageError(`The model returned a ${result.width}×${result.height} tile for a ` +
          `${crop.width}×${crop.height} input: not an integer upscale.`);
      }
      if (scale === null) {
        scale = s;
        if (w * h * s * s > MAX_OUTPUT_PIXELS) {
          throw new PageError(`"${file.name}" (${w}×${h}) is too large to upscale in the ` +
            `browser: the ×${s} result would have ${w * s}×${h * s} pixels (limit ` +
            `${MAX_OUTPUT_PIXELS / 1048576} M). Use esrgan-upscale --server instead.`);
        }
        output = document.createElement("canvas");
        output.width = w * s;
        output.height = h * s;
        outputContext = output.getContext("2d");
      } else if (s !== scale) {
        throw new PageError(`The model changed its scale from ×${scale} to ×${s} mid-image ` +
          "(was a new version loaded?). Try again.");
      }
      const sx = (c.keepFrom - c.start) * s, sy = (r.keepFrom - r.start) * s;
      const sw = (c.keepTo - c.keepFrom) * s, sh = (r.keepTo - r.keepFrom) * s;
      outputContext.drawImage(result, sx, sy, sw, sh, c.keepFrom * s, r.keepFrom * s, sw, sh);
      result.close();
      job.done++;
      updateProgress(job);
    }
  };
  try {
    const count = Math.min(PARALLEL_REQUESTS, cells.length);
    await Promise.all(Array.from({length: count}, worker));
  } catch (e) {
    job.controller.abort();  // Stop the other worker's requests too.
    throw e;
  }
  if (job.controller.signal.aborted) throw new DOMException("cancelled", "AbortError");
  const blob = await canvasBlob(output);
  const seconds = (performance.now() - started) / 1000;
  // The "before" side: bicubic of the same input to the same size.
  const source = document.createElement("canvas");
  source.width = w;
  source.height = h;
  const sourceContext = source.getContext("2d");
  sourceContext.drawImage(bitmap, 0, 0);
  bitmap.close();
  const before = bicubicUpscale(sourceContext.getImageData(0, 0, w, h), scale);
  return {name: file.name, w, h, scale, head, blob, before, seconds, tiles: cells.length};
}

// --- jobs, progress, results --------------------------------------------------------------

function updateProgress(job) {
  $("progress").max = Math.max(1, job.total);
  $("progress").value = job.done;
  $("progress-text").textContent = `tile ${job.done} / ${job.total}`;
}

function outputName(name, scale, head) {
  const stem = name.replace(/\.[^.]*$/, "") || "image";
  return head ? `${stem}_${head}_x${scale}.png` : `${stem}_x${scale}.png`;
}

function showResult(result) {
  const url = URL.createObjectURL(result.blob);
  page.urls.push(url);
  const before = $("before");
  before.width = result.w * result.scale;
  before.height = result.h * result.scale;
  before.getContext("2d").putImageData(result.before, 0, 0);
  $("viewer").hidden = false;
  page.viewer.show(result.w * result.scale, result.h * result.scale, url);
  const link = $("download");
  link.href = url;
  link.download = outputName(result.name, result.scale, result.head);
  $("facts").textContent = `${result.name}: ${result.w}×${result.h} → ` +
    `${result.w * result.scale}×${result.h * result.scale} (×${result.scale}` +
    `${result.head ? `, head ${result.head}` : ""}), ` +
    `${result.tiles} tile${result.tiles > 1 ? "s" : ""}, ${result.seconds.toFixed(2)} s, ` +
    `PNG ${(result.blob.size / 1024).toFixed(0)} KB. Left of the line: bicubic; right: the model.`;
  return url;
}

function addToList(result) {
  const item = document.createElement("li");
  const show = document.createElement("button");
  show.type = "button";
  show.textContent = "Show";
  show.addEventListener("click", () => showResult(result));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(result.blob);
  page.urls.push(link.href);
  link.download = outputName(result.name, result.scale, result.head);
  link.textContent = link.download;
  const facts = document.createElement("span");
  facts.className = "muted";
  facts.textContent = `${result.w}×${result.h} → ${result.w * result.scale}×` +
    `${result.h * result.scale}, ${result.seconds.toFixed(2)} s`;
  item.append(show, link, facts);
  $("results").prepend(item);
}

async function runFiles(files) {
  if (!files.length) return;
  if (page.job) page.job.controller.abort();
  clearError();
  const job = {controller: new AbortController(), total: 0, done: 0, cancelled: false};
  page.job = job;
  $("job").hidden = false;
  $("cancel").hidden = false;
  try {
    for (const file of files) {
      if (job.controller.signal.aborted) break;
      $("job-name").textContent = files.length > 1 ? file.name : "";
      try {
        const result = await upscaleFile(file, job);
        showResult(result);
        addToList(result);
      } catch (e) {
        if (e.name === "AbortError") break;
        showError(e instanceof PageError ? e.message : `Unexpected error with "${file.name}": ${e}`);
      }
    }
  } finally {
    if (page.job === job) {
      page.job = null;
      if (job.cancelled) {  // Say so, and leave the progress where it stopped.
        $("progress-text").textContent = `cancelled after ${job.done} of ${job.total} tiles`;
        $("cancel").hidden = true;
      } else {
        $("job").hidden = true;
      }
    }
  }
}

function setUp() {
  page.viewer = new CompareViewer();
  $("model").value = page.model;
  $("model").addEventListener("change", () => {
    page.model = $("model").value.trim();
    loadModel();
  });
  $("version").addEventListener("change", () => checkSignature().then(clearError, (e) =>
    showError(e instanceof PageError ? e.message : String(e))));
  $("head").addEventListener("change", () => showSignature(page.version));
  $("settings").addEventListener("submit", (e) => e.preventDefault());
  $("upload").addEventListener("change", (e) => {
    runFiles(Array.from(e.target.files));
    e.target.value = "";  // Picking the same file again runs it again.
  });
  $("cancel").addEventListener("click", () => {
    if (!page.job) return;
    page.job.cancelled = true;
    page.job.controller.abort();
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    runFiles(Array.from(e.dataTransfer.files));
  });
  loadModel();
}

setUp();
