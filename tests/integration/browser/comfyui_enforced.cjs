// SafeText's enforced mode in ComfyUI's real front end, in headless Chromium (the server runs with SAFETEXT_ENFORCE).
//
//   node comfyui_enforced.cjs http://127.0.0.1:PORT OUTPUT_DIR '{"checkpoint": ..., "safetext_file": ...}'
//
// Steps: "badge" (the page shows the enforced-mode badge, read from /safetext/v1/enforce), "generate" (the example
// SD 1.5 workflow with Load & Apply switched off is queued from the page: it runs, Load & Apply's line says
// ENFORCED, and both text-encode nodes show the moderation signal). The result line is read by
// tests/integration/test_comfyui_enforced.py.
"use strict";

const fs = require("fs");
const path = require("path");
const { main, step, screenshot } = require("./lib.cjs");

main(async ({ page, args, log, result }) => {
  const cfg = args.config;
  const workflow = path.resolve(__dirname, "..", "..", "..", "example_workflows", "safetext_sd15_generate.json");

  await step(result, log, "badge", async () => {
    await page.goto(args.base + "/", { waitUntil: "load", timeout: 120000 });
    await page.waitForFunction(() => window.app && window.app.graph && window.comfyAPI?.api?.api, null, { timeout: 120000 });
    const badge = await page.waitForSelector("#safetext-enforce-badge", { timeout: 60000 });
    await page.keyboard.press("Escape").catch(() => {});
    const shown = await badge.evaluate((el) => {
      const r = el.getBoundingClientRect();
      return { text: el.textContent, title: el.title, background: getComputedStyle(el).backgroundColor,
        visible: r.width > 20 && r.height > 8 && r.top >= 0 && r.bottom <= innerHeight };
    });
    result.badge = shown;
    result.screenshots.push(await screenshot(page, args.out, "comfyui_enforced_badge.png"));
    return shown;
  });

  await step(result, log, "generate", async () => {
    const graph = JSON.parse(fs.readFileSync(workflow, "utf8"));
    const outcome = await page.evaluate(async ({ graph, cfg }) => {
      const app = window.app;
      const api = window.comfyAPI.api.api;
      await app.loadGraphData(graph, true, true, "enforced");
      const fit = () => { // every node in view, so their DOM widgets are laid out
        const nodes = app.graph._nodes || app.graph.nodes || [];
        let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        for (const n of nodes) {
          x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 60);
          x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1] + 40);
        }
        const rect = app.canvas.canvas.getBoundingClientRect();
        const scale = Math.min((rect.width - 80) / (x1 - x0), (rect.height - 140) / (y1 - y0), 1.2);
        app.canvas.ds.scale = scale;
        app.canvas.ds.offset = [-x0 + 40 / scale, -y0 + 90 / scale];
        app.canvas.setDirty(true, true);
      };
      fit();
      const set = { CheckpointLoaderSimple: { ckpt_name: cfg.checkpoint }, EmptyLatentImage: { width: 64, height: 64 },
        KSampler: { steps: 2, seed: 42 }, SafeTextApply: { safetext_file: cfg.safetext_file, enabled: false } };
      for (const node of app.graph._nodes || app.graph.nodes) {
        for (const [name, value] of Object.entries(set[node.type] || {})) {
          const w = node.widgets?.find((x) => x.name === name);
          if (w) { w.value = value; try { w.callback?.(value, app.canvas, node); } catch (e) {} }
        }
      }
      const done = new Promise((resolve) => {
        for (const type of ["execution_success", "execution_error"]) api.addEventListener(type, (e) => resolve({ type, detail: e.detail }));
      });
      await app.queuePrompt(0, 1);
      const end = await Promise.race([done, new Promise((r) => setTimeout(() => r({ type: "timeout" }), 600000))]);
      await new Promise((r) => setTimeout(r, 1000));
      fit(); // the signal lines made the text-encode nodes taller
      await new Promise((r) => setTimeout(r, 1000));
      const lines = (cls) => [...document.querySelectorAll(cls)].map((el) => {
        const r = el.getBoundingClientRect();
        return { text: el.textContent, visible: r.width > 20 && r.height > 8 };
      });
      return { outcome: end.type, error: end.type === "execution_error" ? end.detail?.exception_message : null,
        apply: lines(".safetext-status"), signals: lines(".safetext-signal") };
    }, { graph, cfg });
    result.generate = outcome;
    result.screenshots.push(await screenshot(page, args.out, "comfyui_enforced_generate.png"));
    return outcome;
  });
});
