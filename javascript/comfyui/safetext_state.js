// SafeText for ComfyUI: what the status line of each SafeText node says, as plain functions of the node's
// widget values and of the server's events. No browser or ComfyUI objects here, so the rules are unit-tested
// with Node.js (tests/test_comfy_nodes.py); safetext.js puts the result on the page.

export const TONES = { on: "#2e7d32", off: "#616161", warn: "#b26a00", busy: "#1565c0", error: "#b71c1c" };

// "none" (nothing chosen, or the "(no SafeText files ...)" placeholder), "missing" (not among the files the
// server lists: e.g. a workflow from elsewhere, or a file deleted since), or "ok".
export function fileState(file, choices) {
  if (typeof file !== "string" || !file || file.startsWith("(")) return "none";
  if (Array.isArray(choices) && choices.length > 0 && !choices.includes(file)) return "missing";
  return "ok";
}

function fileProblem(file, choices) {
  const found = fileState(file, choices);
  if (found === "none") return { text: "SafeText: no file chosen (train one with SafeText Train)", tone: "warn" };
  if (found === "missing") {
    return { text: `SafeText: file missing: ${file}`, tone: "error",
             hint: `${file} is not in models/safetext: train it with SafeText Train, or pick another file (R refreshes the list)` };
  }
  return null;
}

// Load & Apply: { file, choices, enabled, strength, mode, override, enforced } -> { text, tone[, hint] }
// enforced: the server's enforced mode (GET /safetext/v1/enforce), which overrides every widget of this node.
export function applyStatus({ file, choices, enabled, strength, mode, override, enforced }) {
  if (enforced?.enforced) {
    return { text: `SafeText ENFORCED by the server ${Math.round(100 * Number(enforced.strength ?? 1))}%`, tone: "on",
             hint: "The server applies SafeText to every text encoder; this node's settings are ignored" };
  }
  const s = Number(strength ?? 0);
  if (enabled === false || s === 0) return { text: "SafeText OFF", tone: "off" };
  const problem = fileProblem(file, choices);
  if (problem) return problem;
  const weights = String(mode || "").startsWith("weight") ? " (weight blend)" : "";
  const text = `SafeText ON ${Math.round(s * 100)}%${weights}`;
  return override ? { text: `${text}, fingerprint check off`, tone: "warn" } : { text, tone: "on" };
}

// Evaluate: only whether its file is there.
export function evaluateStatus({ file, choices }) {
  return fileProblem(file, choices) ?? { text: `measures ${file}`, tone: "off" };
}

function fileName(name) {
  const text = String(name ?? "").trim();
  if (!text) return "";
  return text.toLowerCase().endsWith(".safetensors") ? text : `${text}.safetensors`;
}

// Train: the last event the server sent for this node (merged: later events keep earlier fields), and the
// file_name widget for the idle state. -> { text, tone }
export function trainStatus(event, fileNameWidget) {
  const name = fileName(event?.file) || fileName(fileNameWidget);
  const phase = event?.phase;
  if (!phase) return { text: name ? `writes models/safetext/${name}` : "SafeText Train", tone: "off" };
  if (phase === "cancelled") return { text: "cancelled: no file written", tone: "off" };
  if (phase === "error") return { text: `failed: ${event.message || "see the error message"}`, tone: "error" };
  if (phase === "reused") return { text: `reused ${name} (same settings: not retrained)`, tone: "on" };
  if (phase === "done") return { text: `done: ${name} written${figuresText(event.figures)}`, tone: "on" };
  if (phase === "start") return { text: `starting: ${name}`, tone: "busy" };
  if (phase === "originals") {
    return { text: `preparing: original outputs of ${event.step ?? 0}/${event.total ?? "?"} prompts`, tone: "busy" };
  }
  if (phase === "finishing") return { text: `training done; measuring held-out prompts, then saving ${name}`, tone: "busy" };
  const parts = [`training ${event.step ?? 0}/${event.total ?? "?"}`];
  if (typeof event.loss === "number") parts.push(`loss ${event.loss.toFixed(4)}`);
  if (typeof event.elapsed === "number") parts.push(`${event.elapsed.toFixed(0)} s`);
  return { text: parts.join("  |  ") + figuresText(event.figures), tone: "busy" };
}

function figuresText(figures) {
  const f = figures || {};
  const parts = [];
  if (typeof f.unsafe_share_moved === "number") parts.push(`unsafe moved ${(100 * f.unsafe_share_moved).toFixed(1)}%`);
  if (typeof f.safe_cos_mean === "number") parts.push(`safe cos ${f.safe_cos_mean.toFixed(3)}`);
  return parts.length ? `  |  ${parts.join("  |  ")}` : "";
}

// The Train node's event state after one more server message: a new run starts afresh, later messages of the
// same run keep what earlier ones said (the file name in particular).
export function mergeTrainEvent(previous, detail) {
  if (detail?.phase === "start") return { ...detail };
  return { ...(previous || {}), ...detail };
}

// Enforced mode: the server's state (GET /safetext/v1/enforce, event safetext.enforce) -> the page's badge, or
// null when the mode is off.
export function enforceBadge(state) {
  if (!state?.enforced) return null;
  if (state.error) {
    return { text: "SafeText enforced: the server's settings are broken, every prompt is refused", tone: "error",
             hint: String(state.error) };
  }
  const text = `SafeText enforced by this server (${Math.round(100 * Number(state.strength ?? 1))}%)`;
  const bare = Array.isArray(state.unprotected) ? state.unprotected : [];
  if (bare.length) {
    return { text: `${text}; ${bare.length} checkpoint${bare.length > 1 ? "s" : ""} ran WITHOUT it`, tone: "warn",
             hint: bare.join("\n") };
  }
  return { text, tone: "on", hint: "Every prompt is encoded with SafeText; no graph or request can turn it off" };
}

// Moderation signal (event safetext.signal) -> the line on the node that encoded the prompt.
export function signalStatus(detail) {
  if (typeof detail?.cosine !== "number") return null;
  const text = `SafeText ${detail.moved ? "moved" : "kept"} this prompt (cos ${detail.cosine.toFixed(3)})`;
  return { text, tone: detail.moved ? "warn" : "on",
           hint: detail.moved ? "SafeText changed what this prompt means to the model (cosine below 0.5)" : text };
}
