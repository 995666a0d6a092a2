// SafeText for ComfyUI: live training status on the Train node and a badge on nodes whose SafeText is active.
// Loaded by ComfyUI from the pack's WEB_DIRECTORY (javascript/comfyui). A1111 does not load this folder.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EVENT = "safetext.progress";
const NODE_TYPES = new Set(["SafeTextApply", "SafeTextTrain", "SafeTextEvaluate"]);
const COLORS = { on: "#2e7d32", off: "#616161", warn: "#b26a00", busy: "#1565c0", error: "#b71c1c" };

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// What the badge of a node says, from its widgets (live) or from what the server last reported.
function badgeOf(node) {
  const type = node.comfyClass || node.type;
  if (type === "SafeTextApply") {
    const enabled = widget(node, "enabled")?.value;
    const strength = Number(widget(node, "strength")?.value ?? 0);
    const file = widget(node, "safetext_file")?.value || "";
    const weight = String(widget(node, "blend_mode")?.value || "").startsWith("weight");
    if (!file || file.startsWith("(")) return { text: "SafeText: no file", color: COLORS.warn };
    if (!enabled || strength === 0) return { text: "SafeText OFF", color: COLORS.off };
    const override = widget(node, "override_fingerprint")?.value;
    return {
      text: `SafeText ON ${Math.round(strength * 100)}%${weight ? " (weights)" : ""}`,
      color: override ? COLORS.warn : COLORS.on,
    };
  }
  if (type === "SafeTextTrain") {
    const s = node.safetextStatus;
    if (!s) return null;
    if (s.phase === "cancelled") return { text: "SafeText: cancelled", color: COLORS.off };
    if (s.phase === "done" || s.phase === "reused") return { text: "SafeText ON (trained)", color: COLORS.on };
    const loss = typeof s.loss === "number" ? `  loss ${s.loss.toFixed(4)}` : "";
    return { text: `training ${s.step ?? 0}/${s.total ?? "?"}${loss}`, color: COLORS.busy };
  }
  return null;
}

function drawStatus(node, ctx) {
  // One line under the title bar of the Train node: step, loss, elapsed time, latest figures.
  const text = node.safetextStatusText;
  if (!text || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#9ccc65";
  ctx.fillText(text, 8, node.size[1] + 14, node.size[0] - 16);
  ctx.restore();
}

function drawBadge(node, ctx) {
  const badge = badgeOf(node);
  if (!badge || node.flags?.collapsed) return;
  const titleHeight = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "bold 11px sans-serif";
  const width = ctx.measureText(badge.text).width + 14;
  const x = node.size[0] - width - 6;
  const y = -titleHeight - 20;
  ctx.fillStyle = badge.color;
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, 17, 8);
  else ctx.rect(x, y, width, 17);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(badge.text, x + 7, y + 9);
  ctx.restore();
}

function statusLines(s) {
  if (!s) return "";
  const lines = [];
  if (s.phase === "start") lines.push("starting...");
  else if (s.phase === "cancelled") lines.push("cancelled: no file written");
  else if (s.phase === "done") lines.push(`done: ${s.file ?? ""}`);
  else lines.push(`step ${s.step}/${s.total}  (${s.phase})`);
  if (typeof s.loss === "number") lines.push(`loss ${s.loss.toFixed(5)}`);
  if (typeof s.elapsed === "number") lines.push(`${s.elapsed.toFixed(0)} s`);
  const f = s.figures || {};
  if (typeof f.unsafe_share_moved === "number") lines.push(`unsafe moved ${(100 * f.unsafe_share_moved).toFixed(1)}%`);
  if (typeof f.safe_cos_mean === "number") lines.push(`safe cos ${f.safe_cos_mean.toFixed(3)}`);
  return lines.join("  |  ");
}

app.registerExtension({
  name: "SafeText.Nodes",

  async setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      if (!detail || detail.node == null) return;
      const node = app.graph?.getNodeById?.(Number(detail.node)) ?? app.graph?.getNodeById?.(detail.node);
      if (!node) return;
      node.safetextStatus = { ...(node.safetextStatus || {}), ...detail };
      node.safetextStatusText = statusLines(node.safetextStatus);
      node.setDirtyCanvas?.(true, true);
      app.graph?.setDirtyCanvas?.(true, true);
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_TYPES.has(nodeData.name)) return;

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = onDrawForeground?.apply(this, arguments);
      drawBadge(this, ctx);
      drawStatus(this, ctx);
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const state = message?.safetext?.[0];
      if (state && nodeData.name === "SafeTextTrain") {
        this.safetextStatus = { ...(this.safetextStatus || {}), phase: state.reused ? "reused" : "done", file: state.file };
        this.safetextStatusText = state.reused ? `reused ${state.file} (same settings: not retrained)` : `done: ${state.file}`;
      }
      if (state?.warnings?.length) this.safetextWarnings = state.warnings;
      this.setDirtyCanvas?.(true, true);
      return r;
    };
  },
});
