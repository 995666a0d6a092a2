// SafeText for ComfyUI: a status line on each SafeText node (on/off/strength, a missing file, live training).
// Loaded by ComfyUI from the pack's WEB_DIRECTORY (javascript/comfyui); A1111 does not load this folder.
//
// The line is a DOM widget (node.addDOMWidget), not canvas drawing (the Vue node renderer, "Nodes 2.0", never
// calls onDrawForeground). It is filled from the node's own widget values and from server events on the API (never
// from onExecuted, which the Vue renderer may not call), and it is not saved with the workflow (serialize: false),
// so saved workflows load unchanged. The Vue renderer of ComfyUI 0.3.64's front end (1.27) draws only the widget
// types it knows, so there a DOM widget is not on the node at all: while that renderer is on, a panel in the
// page's corner lists every SafeText node whose line is not on screen, with the same text.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { TONES, applyStatus, enforceBadge, evaluateStatus, mergeTrainEvent, signalStatus, trainStatus }
  from "./safetext_state.js";

const EVENT = "safetext.progress";
const STATUS = "safetext_status"; // widget name and type (a type no renderer has its own component for)
const NODE_TYPES = new Set(["SafeTextApply", "SafeTextTrain", "SafeTextEvaluate"]);
const SIGNAL = "safetext_signal"; // the moderation signal's line on a text-encode node (never saved either)
let ENFORCE = null; // the server's enforced mode (GET /safetext/v1/enforce)

function typeOf(node) {
  return node?.comfyClass || node?.constructor?.comfyClass || node?.type;
}

function value(node, name) {
  return node.widgets?.find((w) => w.name === name)?.value;
}

function choices(node, name) {
  const values = node.widgets?.find((w) => w.name === name)?.options?.values;
  return typeof values === "function" ? values() : values;
}

function statusOf(node) {
  switch (typeOf(node)) {
    case "SafeTextApply":
      return applyStatus({
        file: value(node, "safetext_file"), choices: choices(node, "safetext_file"), enabled: value(node, "enabled"),
        strength: value(node, "strength"), mode: value(node, "blend_mode"), override: value(node, "override_fingerprint"),
        enforced: ENFORCE,
      });
    case "SafeTextEvaluate":
      return evaluateStatus({ file: value(node, "safetext_file"), choices: choices(node, "safetext_file") });
    case "SafeTextTrain":
      return trainStatus(node.safetextEvent, value(node, "file_name"));
  }
  return null;
}

function refresh(node) {
  const element = node?.safetextElement;
  const status = element && statusOf(node);
  if (!status) return;
  const key = `${status.tone}|${status.text}|${status.hint ?? ""}`;
  if (element.dataset.key === key) return;
  element.dataset.key = key;
  element.dataset.tone = status.tone;
  element.textContent = status.text;
  element.title = status.hint ?? status.text; // the whole story on hover: the line may be cut short
  element.style.background = TONES[status.tone] ?? TONES.off;
  node.setDirtyCanvas?.(true, false);
  refreshPanel();
}

function fitSize(node) {
  const needed = node.computeSize?.();
  if (needed && node.size && (needed[1] > node.size[1] || needed[0] > node.size[0])) {
    node.setSize?.([Math.max(node.size[0], needed[0]), Math.max(node.size[1], needed[1])]);
  }
}

function addStatusLine(node) {
  if (typeof node.addDOMWidget !== "function" || node.safetextElement) return;
  const element = document.createElement("div");
  element.className = "safetext-status";
  element.style.cssText = "box-sizing:border-box;width:100%;min-height:20px;padding:2px 8px;border-radius:8px;color:#fff;" +
    "font:bold 11px/16px sans-serif;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;";
  // 28 px row, 4 px margin (the canvas renderer's default margin of 10 px would leave an 8 px element).
  const widget = node.addDOMWidget(STATUS, STATUS, element, {
    serialize: false, hideOnZoom: false, margin: 4, getMinHeight: () => 28, getMaxHeight: () => 28, getHeight: () => 28,
  });
  widget.serialize = false; // neither in widgets_values nor in the prompt sent to the server
  widget.serializeValue = () => undefined;
  node.safetextElement = element;
  for (const w of node.widgets ?? []) {
    if (w === widget) continue;
    const callback = w.callback;
    w.callback = function () {
      const r = callback?.apply(this, arguments);
      refresh(node);
      return r;
    };
  }
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    const r = onConfigure?.apply(this, arguments);
    fitSize(node);
    refresh(node);
    return r;
  };
  fitSize(node);
  refresh(node);
}

function vueNodesOn() {
  try {
    return Boolean(app.ui?.settings?.getSettingValue?.("Comfy.VueNodes.Enabled") ??
                   app.extensionManager?.setting?.get?.("Comfy.VueNodes.Enabled"));
  } catch (error) {
    return false;
  }
}

function onScreen(element) {
  if (!element?.isConnected || element.offsetParent === null) return false;
  const box = element.getBoundingClientRect?.();
  return !box || (box.height >= 8 && box.width >= 20);
}

// An element of the page's own (the enforced-mode badge, the status panel), found by its id or made once.
function pageElement(id, css) {
  let element = document.getElementById(id);
  if (!element) {
    element = document.createElement("div");
    element.id = id;
    element.style.cssText = css;
    document.body.appendChild(element);
  }
  return element;
}

// The corner panel for renderers that leave the status line off the node (see the top of this file).
function refreshPanel() {
  if (typeof document === "undefined" || !document.body) return;
  const rows = vueNodesOn() ? allNodes().filter((node) => node.safetextElement && !onScreen(node.safetextElement)) : [];
  let panel = document.getElementById("safetext-status-panel");
  if (!rows.length) {
    panel?.remove?.();
    return;
  }
  const key = rows.map((node) => `${node.id}|${node.title ?? ""}|${node.safetextElement.dataset.key}`).join("\n");
  if (panel?.dataset.key === key) return;
  // Above the canvas toolbar (zoom and fit buttons) that the front end keeps in the bottom-right corner.
  panel = pageElement("safetext-status-panel", "position:fixed;right:12px;bottom:72px;z-index:10000;display:flex;" +
    "flex-direction:column;gap:4px;max-width:420px;pointer-events:auto;opacity:0.95;");
  panel.dataset.key = key;
  panel.replaceChildren(...rows.map((node) => {
    const row = document.createElement("div");
    row.style.cssText = "display:flex;gap:6px;align-items:center;font:bold 11px/16px sans-serif;color:#ddd;";
    const label = document.createElement("span");
    label.textContent = `#${node.id} ${node.title || typeOf(node)}:`;
    const line = document.createElement("span");
    line.className = "safetext-status";
    line.style.cssText = "padding:2px 8px;border-radius:8px;color:#fff;white-space:nowrap;overflow:hidden;" +
      "text-overflow:ellipsis;";
    line.dataset.tone = node.safetextElement.dataset.tone;
    line.textContent = node.safetextElement.textContent;
    line.title = node.safetextElement.title;
    line.style.background = node.safetextElement.style.background;
    row.replaceChildren(label, line);
    return row;
  }));
}

function nodeById(id) {
  if (id == null || !app.graph) return null;
  const last = String(id).split(":").pop(); // subgraph execution ids look like "12:7"
  return app.graph.getNodeById?.(Number(last)) ?? app.graph.getNodeById?.(last) ?? null;
}

function allNodes() {
  const graph = app.graph;
  return (graph?._nodes ?? graph?.nodes ?? []).filter((node) => NODE_TYPES.has(typeOf(node)));
}

function paint(element, status) {
  element.textContent = status.text;
  element.title = status.hint ?? status.text;
  element.style.background = TONES[status.tone] ?? TONES.off;
}

// The enforced mode's badge: fixed in the page's corner while the mode is on.
function showEnforce(state) {
  ENFORCE = state;
  const badge = enforceBadge(state);
  if (typeof document === "undefined" || !document.body) return;
  if (!badge) {
    document.getElementById("safetext-enforce-badge")?.remove?.();
    return;
  }
  paint(pageElement("safetext-enforce-badge", "position:fixed;left:12px;bottom:12px;z-index:10000;padding:4px 10px;" +
    "border-radius:8px;color:#fff;font:bold 12px/18px sans-serif;pointer-events:auto;opacity:0.92;"), badge);
  allNodes().forEach(refresh);
}

// The signal on the node that encoded the prompt (a CLIP Text Encode), and a toast when a prompt was moved.
function showSignal(detail) {
  const status = signalStatus(detail);
  const node = nodeById(detail?.node);
  if (!status || !node) return;
  if (!node.safetextSignalElement && typeof node.addDOMWidget === "function") {
    const element = document.createElement("div");
    element.className = "safetext-signal";
    element.style.cssText = "box-sizing:border-box;width:100%;min-height:20px;padding:2px 8px;border-radius:8px;" +
      "color:#fff;font:bold 11px/16px sans-serif;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;";
    const widget = node.addDOMWidget(SIGNAL, SIGNAL, element, {
      serialize: false, hideOnZoom: false, margin: 4, getMinHeight: () => 28, getMaxHeight: () => 28, getHeight: () => 28,
    });
    widget.serialize = false;
    widget.serializeValue = () => undefined;
    node.safetextSignalElement = element;
    fitSize(node);
  }
  if (node.safetextSignalElement) paint(node.safetextSignalElement, status);
  if (detail.moved) app.extensionManager?.toast?.add?.({ severity: "warn", summary: "SafeText", detail: status.text, life: 6000 });
  node.setDirtyCanvas?.(true, false);
}

function onTrainEvent(node, detail) {
  node.safetextEvent = mergeTrainEvent(node.safetextEvent, detail);
  refresh(node);
}

app.registerExtension({
  name: "SafeText.Nodes",

  async setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = nodeById(detail?.node);
      if (node && typeOf(node) === "SafeTextTrain") onTrainEvent(node, detail);
    });
    api.addEventListener("executed", ({ detail }) => {
      const node = nodeById(detail?.display_node ?? detail?.node);
      const state = detail?.output?.safetext?.[0];
      if (node && state && typeOf(node) === "SafeTextTrain") {
        onTrainEvent(node, { phase: state.reused ? "reused" : "done", file: state.file });
      }
      if (node) refresh(node);
    });
    api.addEventListener("execution_error", ({ detail }) => {
      const node = nodeById(detail?.node_id);
      if (node && typeOf(node) === "SafeTextTrain") {
        onTrainEvent(node, { phase: "error", message: String(detail.exception_message ?? "").split("\n")[0].slice(0, 160) });
      }
    });
    api.addEventListener("safetext.signal", ({ detail }) => showSignal(detail));
    api.addEventListener("safetext.enforce", ({ detail }) => showEnforce(detail));
    if (typeof api.fetchApi === "function") {
      try {
        const response = await api.fetchApi("/safetext/v1/enforce");
        if (response.ok) showEnforce(await response.json());
      } catch (error) {
        console.warn("SafeText: could not read the enforced mode's state", error);
      }
    }
    // Widget values can change without a callback (a file list refreshed with R, a workflow pasted in): a cheap
    // check once a second keeps every status line right; refresh() touches the page only when the text changes.
    setInterval(() => {
      allNodes().forEach(refresh);
      refreshPanel();
    }, 1000);
  },

  async nodeCreated(node) {
    if (NODE_TYPES.has(typeOf(node))) addStatusLine(node);
  },

  async refreshComboInNodes() {
    allNodes().forEach(refresh);
  },
});
