// SafeText in ComfyUI's real front end, in headless Chromium.
//
//   node comfyui.cjs http://127.0.0.1:PORT OUTPUT_DIR '{"workflows_dir": ..., "checkpoint": ..., ...}'
//
// Config (all optional except where a step needs it):
//   workflows_dir   folder of example workflows (default: this repository's example_workflows/)
//   checkpoint      checkpoint name to put in the loaders before queueing (the harness's tiny SD 1.5)
//   safetext_file   a SafeText file in models/safetext made for that checkpoint (generate step)
//   train           {file_name, steps, batch_size, learning_rate, unsafe: [...], safe: [...], train_parameters}
//   size, sampler_steps   latent size and sampler steps used when queueing (default 64 and 2)
//   queue_timeout_s       how long one queued prompt may take (default 900)
// Steps and what each records are in docs/testing.md; the result line is read by tests/integration/test_browser.py.
"use strict";

const fs = require("fs");
const path = require("path");
const { main, step, screenshot, pixelsOf } = require("./lib.cjs");

const BADGE = /^(SafeText( ON| OFF|:)|training \d+\/|reused |done: |cancelled|step \d+\/|starting)/;

// Records every text the page draws on a canvas that looks like SafeText's (badges, status lines).
const CANVAS_SPY = `(() => {
  const drawn = new Map();
  window.__safetextCanvasTexts = drawn;
  const original = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text) {
    try {
      if (typeof text === "string" && /^SafeText (ON|OFF)|^SafeText: |^training \\d|^done: |^reused |^cancelled|^step \\d|loss /.test(text)) drawn.set(text, Date.now());
    } catch (e) {}
    return original.apply(this, arguments);
  };
})();`;

main(async ({ page, args, log, result }) => {
  const cfg = args.config;
  const workflowsDir = cfg.workflows_dir || path.resolve(__dirname, "..", "..", "..", "example_workflows");
  const size = cfg.size || 64;
  const samplerSteps = cfg.sampler_steps || 2;
  const queueTimeout = (cfg.queue_timeout_s || 900) * 1000;
  await page.addInitScript(CANVAS_SPY);

  // ------------------------------------------------------------------ the page and our extension
  await step(result, log, "page", async () => {
    await page.goto(args.base + "/", { waitUntil: "load", timeout: 120000 });
    await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.comfyAPI?.api?.api,
      null, { timeout: 120000 });
    await page.waitForFunction(() => (window.app.extensions || []).length > 0, null, { timeout: 60000 });
    await page.waitForTimeout(1500);
    await page.keyboard.press("Escape").catch(() => {});
    const info = await page.evaluate(async () => {
      const api = window.comfyAPI.api.api;
      const events = [];
      window.__safetextEvents = events;
      for (const type of ["execution_start", "executing", "executed", "execution_success", "execution_error",
        "execution_interrupted", "execution_cached", "safetext.progress"]) {
        api.addEventListener(type, (e) => events.push({ type, at: Date.now(), detail: e.detail }));
      }
      const scripts = await (await fetch("./extensions")).json();
      const setting = (id) => { try { return window.app.ui.settings.getSettingValue(id); } catch (e) { return null; } };
      return {
        extensions: (window.app.extensions || []).map((e) => e.name).filter((n) => /safetext/i.test(n)),
        safetext_scripts: scripts.filter((s) => /safetext/i.test(s)),
        registered: Object.keys(window.LiteGraph?.registered_node_types || {}).filter((t) => t.startsWith("SafeText")),
        frontend_version: window.__COMFYUI_FRONTEND_VERSION__ || null,
        vue_nodes: setting("Comfy.VueNodes.Enabled"),
      };
    });
    return info;
  });

  const objectInfo = await page.evaluate(async () => {
    const info = await (await fetch("./object_info")).json();
    const out = {};
    for (const [name, def] of Object.entries(info)) {
      if (!name.startsWith("SafeText")) continue;
      const inputs = { ...(def.input?.required || {}), ...(def.input?.optional || {}) };
      out[name] = {
        widgets: Object.entries(inputs).filter(([, spec]) => Array.isArray(spec[0]) || ["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"].includes(spec[0])).map(([n]) => n),
        combos: Object.fromEntries(Object.entries(inputs).filter(([, spec]) => Array.isArray(spec[0]) || spec[0] === "COMBO")
          .map(([n, spec]) => [n, Array.isArray(spec[0]) ? spec[0] : spec[1]?.options || []])),
      };
    }
    return out;
  });
  result.object_info = objectInfo;

  // Fit the whole graph into the canvas (LiteGraph: screen = (graph + offset) * scale).
  async function fitView() {
    await page.evaluate(() => {
      const app = window.app;
      const nodes = app.graph._nodes || app.graph.nodes || [];
      if (!nodes.length) return;
      const titleHeight = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const n of nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - titleHeight - 30);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1] + 24);
      }
      const canvas = app.canvas.canvas;
      const rect = canvas.getBoundingClientRect();
      const pad = 40;
      const scale = Math.min((rect.width - 2 * pad) / (x1 - x0), (rect.height - 2 * pad - 60) / (y1 - y0), 1.2);
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [-x0 + pad / scale, -y0 + (pad + 50) / scale];
      app.canvas.setDirty(true, true);
      app.graph.setDirtyCanvas?.(true, true);
    });
    await page.waitForTimeout(600);
  }

  // What a node shows: texts its foreground hook draws (for attribution), texts the real canvas drew in the
  // last frame, and SafeText texts in the DOM (for DOM widgets or the Vue node renderer).
  async function shown(nodeId) {
    return page.evaluate(async (id) => {
      const STATUS_TEXT = /^SafeText (ON|OFF)|^SafeText: |^training \d|^starting: |^done: |^reused |^failed: |^cancelled: |^writes models/;
      const app = window.app;
      const node = app.graph.getNodeById(id);
      const hook = [];
      if (node && typeof node.onDrawForeground === "function") {
        const ctx = document.createElement("canvas").getContext("2d");
        const fill = ctx.fillText.bind(ctx);
        ctx.fillText = (text, ...rest) => { hook.push(String(text)); return fill(text, ...rest); };
        try { node.onDrawForeground(ctx, app.canvas, app.canvas.canvas); } catch (e) { hook.push("THREW: " + e.message); }
      }
      window.__safetextCanvasTexts.clear();
      app.canvas.setDirty(true, true);
      try { app.canvas.draw(true, true); } catch (e) {}
      await new Promise((r) => setTimeout(r, 400));
      const canvas = [...window.__safetextCanvasTexts.keys()];
      // DOM texts that a person can read: laid out, at least 8 px tall, not hidden, inside the window.
      const dom = [], hidden = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      while (walker.nextNode()) {
        const text = walker.currentNode.textContent.trim();
        const el = walker.currentNode.parentElement;
        if (!text || !el || !STATUS_TEXT.test(text)) continue;
        const r = el.getBoundingClientRect();
        const style = getComputedStyle(el);
        const box = { text, x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width), height: Math.round(r.height),
          clipped: el.scrollHeight > el.clientHeight + 2, display: style.display, visibility: style.visibility,
          opacity: style.opacity };
        const readable = el.offsetParent !== null && r.height >= 8 && r.width >= 20 && style.visibility !== "hidden" &&
          Number(style.opacity) > 0.2 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth && !box.clipped;
        (readable ? dom : hidden).push(readable ? text : box);
      }
      return { hook, canvas, dom, hidden, status: node?.safetextStatusText ?? null, state: node?.safetextStatus ?? null };
    }, nodeId);
  }

  async function loadWorkflow(name, graph) {
    return page.evaluate(async ({ name, graph }) => {
      const app = window.app;
      await app.loadGraphData(graph, true, true, name);
      await new Promise((r) => setTimeout(r, 500));
      const dialogs = [...document.querySelectorAll(".p-dialog")].filter((d) => d.offsetParent !== null)
        .map((d) => d.innerText.slice(0, 500));
      const nodes = (app.graph._nodes || app.graph.nodes).map((n) => ({
        id: n.id, type: n.type, comfyClass: n.comfyClass || null,
        registered: n.type in (window.LiteGraph?.registered_node_types || {}),
        has_errors: !!n.has_errors,
        widgets: (n.widgets || []).map((w) => ({ name: w.name, type: w.type, value: w.value,
          options: Array.isArray(w.options?.values) ? w.options.values : undefined })),
      }));
      return { nodes, dialogs, links: Object.keys(app.graph.links || {}).length || (app.graph.links?.size ?? 0) };
    }, { name, graph });
  }

  // ------------------------------------------------------------------ every example workflow loads
  const files = fs.readdirSync(workflowsDir).filter((f) => f.endsWith(".json")).sort();
  result.workflows = {};
  for (const file of files) {
    const name = file.replace(/\.json$/, "");
    const graph = JSON.parse(fs.readFileSync(path.join(workflowsDir, file), "utf8"));
    await step(result, log, `load:${name}`, async () => {
      const loaded = await loadWorkflow(file, graph);
      await page.keyboard.press("Escape").catch(() => {});
      await fitView();
      const expected = graph.nodes.map((n) => ({ id: n.id, type: n.type, widgets_values: n.widgets_values || [] }));
      const badges = {};
      for (const n of loaded.nodes.filter((n) => String(n.type).startsWith("SafeText"))) badges[n.id] = await shown(n.id);
      const shot = await screenshot(page, args.out, `comfyui_${name}.png`);
      result.screenshots.push(shot);
      result.workflows[name] = { expected, loaded: loaded.nodes, dialogs: loaded.dialogs, links: loaded.links,
        expected_links: (graph.links || []).length, badges };
      return { nodes: loaded.nodes.length };
    });
  }

  // ------------------------------------------------------------------ queue from the page
  async function setWidgets(changes) {
    return page.evaluate((changes) => {
      const app = window.app;
      const missing = [];
      for (const [type, values] of Object.entries(changes)) {
        const nodes = (app.graph._nodes || app.graph.nodes).filter((n) => n.type === type);
        if (!nodes.length) missing.push(type);
        for (const node of nodes) {
          for (const [name, value] of Object.entries(values)) {
            const w = node.widgets?.find((x) => x.name === name);
            if (!w) { missing.push(`${type}.${name}`); continue; }
            w.value = value;
            try { w.callback?.(value, app.canvas, node); } catch (e) {}
          }
        }
      }
      app.graph.setDirtyCanvas?.(true, true);
      return missing;
    }, changes);
  }

  async function queueAndWait(label) {
    const mark = await page.evaluate(() => Date.now());
    await page.evaluate(async () => { await window.app.queuePrompt(0, 1); });
    const handle = await page.waitForFunction((mark) => {
      const events = window.__safetextEvents.filter((e) => e.at >= mark);
      return events.find((e) => ["execution_success", "execution_error", "execution_interrupted"].includes(e.type)) || null;
    }, mark, { timeout: queueTimeout, polling: 500 });
    const end = await handle.jsonValue();
    await page.waitForTimeout(800); // let onExecuted and the last canvas frame happen
    const events = await page.evaluate((mark) => window.__safetextEvents.filter((e) => e.at >= mark)
      .map((e) => ({ type: e.type, node: e.detail?.node ?? e.detail?.display_node ?? null,
        output: e.type === "executed" ? e.detail?.output : undefined,
        progress: e.type === "safetext.progress" ? e.detail : undefined,
        error: e.type === "execution_error" ? { node_type: e.detail?.node_type, message: e.detail?.exception_message } : undefined })), mark);
    log(`${label}: ${end.type} after ${(Date.now() - mark) / 1000} s`);
    return { outcome: end.type, seconds: (end.at - mark) / 1000, events };
  }

  // Pixels of the images a run saved (fetched through /view): size, digest and RGB values.
  async function images(events) {
    const refs = events.filter((e) => e.type === "executed" && e.output?.images).flatMap((e) =>
      e.output.images.map((img) => ({ node: e.node, ...img })));
    const out = [];
    for (const ref of refs) {
      const url = `./view?filename=${encodeURIComponent(ref.filename)}&subfolder=${encodeURIComponent(ref.subfolder || "")}&type=${ref.type || "output"}`;
      out.push({ node: ref.node, type: ref.type, filename: ref.filename, ...(await pixelsOf(page, url)) });
    }
    return out;
  }

  function meanDifference(a, b) {
    if (!a || !b || a.length !== b.length) return null;
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
    return sum / a.length;
  }

  const generateFile = files.find((f) => /sd15.*generate/.test(f));
  if (cfg.checkpoint && cfg.safetext_file && generateFile) {
    const graph = JSON.parse(fs.readFileSync(path.join(workflowsDir, generateFile), "utf8"));
    const common = {
      CheckpointLoaderSimple: { ckpt_name: cfg.checkpoint },
      EmptyLatentImage: { width: size, height: size },
      KSampler: { steps: samplerSteps, seed: 42 },
    };
    const runs = {};
    for (const [label, enabled] of [["on", true], ["off", false]]) {
      await step(result, log, `generate:${label}`, async () => {
        await loadWorkflow(generateFile, graph);
        await fitView();
        const missing = await setWidgets({ ...common, SafeTextApply: { safetext_file: cfg.safetext_file, enabled, strength: 1.0 } });
        if (missing.length) throw new Error("widgets not found: " + missing.join(", "));
        const before = await shown(2);
        const run = await queueAndWait(`generate ${label}`);
        const after = await shown(2);
        const imgs = await images(run.events);
        runs[label] = imgs;
        result.screenshots.push(await screenshot(page, args.out, `comfyui_generate_${label}.png`));
        return { outcome: run.outcome, run_seconds: run.seconds, badge_before: before, badge_after: after,
          errors: run.events.filter((e) => e.error).map((e) => e.error),
          images: imgs.map(({ pixels, ...rest }) => rest) };
      });
    }
    const on = runs.on?.[0], off = runs.off?.[0];
    result.generate_difference = on && off ? meanDifference(on.pixels, off.pixels) : null;
  }

  const trainFile = files.find((f) => /sd15.*train/.test(f));
  if (cfg.checkpoint && cfg.train && trainFile) {
    const graph = JSON.parse(fs.readFileSync(path.join(workflowsDir, trainFile), "utf8"));
    await step(result, log, "train", async () => {
      await loadWorkflow(trainFile, graph);
      await fitView();
      const t = cfg.train;
      const trainWidgets = { file_name: t.file_name, steps: t.steps, batch_size: t.batch_size, learning_rate: t.learning_rate,
        only_my_prompts: true, unsafe_prompts: t.unsafe.join("\n"), safe_prompts: t.safe.join("\n"),
        train_parameters: t.train_parameters || "", overwrite: true };
      for (const c of ["sexual", "violence", "self_harm", "hate", "illegal", "shocking"]) trainWidgets[`unsafe_${c}`] = false;
      const missing = await setWidgets({
        CheckpointLoaderSimple: { ckpt_name: cfg.checkpoint },
        EmptyLatentImage: { width: size, height: size },
        KSampler: { steps: samplerSteps, seed: 42 },
        SafeTextTrain: trainWidgets,
      });
      if (missing.length) throw new Error("widgets not found: " + missing.join(", "));
      const trainNode = await page.evaluate(() => (window.app.graph._nodes || window.app.graph.nodes).find((n) => n.type === "SafeTextTrain").id);
      const run = await queueAndWait("train");
      const after = await shown(trainNode);
      const preview = await page.evaluate((id) => {
        const node = window.app.graph.getNodeById(id);
        return { imgs: (node.imgs || []).length };
      }, trainNode);
      result.screenshots.push(await screenshot(page, args.out, "comfyui_train.png"));
      const imgs = await images(run.events);
      return { outcome: run.outcome, run_seconds: run.seconds, shown: after, preview,
        progress: run.events.filter((e) => e.progress).map((e) => e.progress),
        errors: run.events.filter((e) => e.error).map((e) => e.error),
        images: imgs.map(({ pixels, ...rest }) => rest) };
    });
  }
  // ------------------------------------------------------------------ the Vue node renderer ("Nodes 2.0")
  // It draws nodes as DOM, not on the canvas (onDrawForeground is never called): a status drawn on the canvas
  // would be gone there. Switch it on, reload, load the generate workflow and queue it once more.
  if (cfg.vue_nodes && cfg.checkpoint && cfg.safetext_file && generateFile) {
    await step(result, log, "vue:generate", async () => {
      const switched = await page.evaluate(async () => {
        const store = window.app.extensionManager?.setting;
        if (!store?.set) return false;
        await store.set("Comfy.VueNodes.Enabled", true);
        return true;
      });
      if (!switched) throw new Error("cannot switch the Vue node renderer on from the page");
      await page.reload({ waitUntil: "load" });
      await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.comfyAPI?.api?.api,
        null, { timeout: 120000 });
      await page.waitForTimeout(1500);
      await page.evaluate(() => {
        const api = window.comfyAPI.api.api;
        const events = [];
        window.__safetextEvents = events;
        for (const type of ["execution_start", "executed", "execution_success", "execution_error", "execution_interrupted"]) {
          api.addEventListener(type, (e) => events.push({ type, at: Date.now(), detail: e.detail }));
        }
      });
      const enabled = await page.evaluate(() => window.app.ui.settings.getSettingValue("Comfy.VueNodes.Enabled"));
      const graph = JSON.parse(fs.readFileSync(path.join(workflowsDir, generateFile), "utf8"));
      await loadWorkflow(generateFile, graph);
      await fitView();
      const missing = await setWidgets({
        CheckpointLoaderSimple: { ckpt_name: cfg.checkpoint }, EmptyLatentImage: { width: size, height: size },
        KSampler: { steps: samplerSteps, seed: 42 },
        SafeTextApply: { safetext_file: cfg.safetext_file, enabled: true, strength: 1.0 },
      });
      if (missing.length) throw new Error("widgets not found: " + missing.join(", "));
      await page.waitForTimeout(1500);
      const before = await shown(2);
      const vueNodes = await page.evaluate(() => document.querySelectorAll("[data-node-id]").length);
      const run = await queueAndWait("vue generate");
      const after = await shown(2);
      result.screenshots.push(await screenshot(page, args.out, "comfyui_vue_generate_on.png"));
      return { vue_nodes_setting: enabled, vue_node_elements: vueNodes, outcome: run.outcome, run_seconds: run.seconds,
        badge_before: before, badge_after: after, errors: run.events.filter((e) => e.error).map((e) => e.error) };
    });
  }
  result.badge_pattern = String(BADGE);
});
