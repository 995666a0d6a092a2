// SafeText in the AUTOMATIC1111 / Forge pages (Gradio 3.41 / 4.x), in headless Chromium.
//
//   node webui.cjs http://127.0.0.1:PORT OUTPUT_DIR '{"checkpoint": "...", "safetext_file": "...", ...}'
//
// Config:
//   host            "a1111" or "forge" (names the screenshots; the selectors are the same)
//   checkpoint      the test checkpoint's file stem (the selector must list it)
//   safetext_file   a SafeText file in models/safetext made for that checkpoint
//   prompt, seed, steps, size      the txt2img job (default: a cat, 11, 2 steps, 64x64)
//   train           {name, steps, batch_size, learning_rate, unsafe: [...], safe: [...]}; absent: no training step
//   train_lowrank   {name, rank}: after generating, train again from the tab with this LoRA rank; absent: not
//   skip            names of steps to leave out ("generate", "train")
//   job_timeout_s   how long one generation or training may take (default 900)
// The result line is read by tests/integration/test_browser.py; what each step checks is in docs/testing.md.
"use strict";

const { main, step, screenshot, pixelsOf } = require("./lib.cjs");

const TUPLE = /^\(\s*['"].*['"]\s*,\s*['"].*['"]\s*\)$/;

main(async ({ page, args, log, result }) => {
  const cfg = args.config;
  const host = cfg.host || "a1111";
  const skip = new Set(cfg.skip || []);
  const jobTimeout = (cfg.job_timeout_s || 900) * 1000;
  const root = (selector) => `gradio-app ${selector}`;

  // Top-level tabs: Gradio 4 (Forge) gives their buttons ids (tab_<id>-button); Gradio 3.41 does not, so match the
  // text (case aside: Forge says "Txt2img"). Top-level buttons come first in the page.
  const TAB_BUTTONS = "#tabs > .tab-nav button, #tabs button[role=tab]";
  async function clickTab(id, text) {
    let button = page.locator(`#tab_${id}-button`);
    if (!(await button.count())) {
      button = page.locator(TAB_BUTTONS).filter({ hasText: new RegExp(`^\\s*${text}\\s*$`, "i") }).first();
    }
    await button.click();
    await page.waitForTimeout(700);
  }
  async function tabNames() {
    return (await page.locator(TAB_BUTTONS).allInnerTexts()).map((t) => t.trim());
  }

  // The checkpoint selector: A1111's quicksetting (#setting_sd_model_checkpoint) or Forge's "Checkpoint" dropdown.
  async function checkpointSelectorId() {
    return page.evaluate(() => {
      if (document.querySelector("#setting_sd_model_checkpoint input")) return "setting_sd_model_checkpoint";
      for (const block of document.querySelectorAll(".gradio-dropdown")) {
        const label = block.querySelector("[data-testid=block-info], label span");
        if (label && label.textContent.trim() === "Checkpoint") {
          if (!block.id) block.id = "safetext_test_checkpoint_selector";
          return block.id;
        }
      }
      return null;
    });
  }

  // "Error" badges (Gradio's status tracker after a failed event) anywhere in `scope`.
  async function errorBadges(scope) {
    return page.evaluate((scope) => {
      const app = document.querySelector("gradio-app");
      const base = (app && app.shadowRoot) || document;
      const area = scope ? base.querySelector(scope) : base;
      if (!area) return { total: -1, visible: 0, where: [] };
      const hits = [...area.querySelectorAll(".error, .status-tracker .error, [class*='error']")]
        .filter((el) => el.children.length === 0 && el.textContent.trim() === "Error");
      const where = hits.slice(0, 20).map((el) => {
        const block = el.closest("[id]");
        return block ? block.id : el.className;
      });
      return { total: hits.length, visible: hits.filter((el) => el.offsetParent !== null).length, where };
    }, scope);
  }

  // Options of a Gradio dropdown (click to open, read the list, close).
  async function dropdownOptions(id) {
    const input = page.locator(`#${id} input`).first();
    await input.scrollIntoViewIfNeeded();
    const value = await input.inputValue();
    await input.click();
    await page.waitForTimeout(500);
    const options = await page.locator(`#${id} ul.options li, ul.options[role=listbox] li`).allInnerTexts();
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
    await page.locator("body").click({ position: { x: 5, y: 5 } }).catch(() => {});
    // Gradio marks the selected option with a check mark in front of its text: drop it.
    return { value, options: options.map((o) => o.replace(/\s+/g, " ").replace(/^\u2713\s*/, "").trim()).filter((o) => o !== "") };
  }

  async function chooseOption(id, text) {
    const input = page.locator(`#${id} input`).first();
    await input.click();
    await page.waitForTimeout(300);
    await page.locator(`#${id} ul.options li, ul.options[role=listbox] li`).filter({ hasText: text }).first().click();
    await page.waitForTimeout(300);
    return input.inputValue();
  }

  async function setNumber(id, value) {
    const input = page.locator(`#${id} input[type=number]`).first();
    await input.fill(String(value));
    await input.press("Tab");
  }


  // ------------------------------------------------------------------ the page
  await step(result, log, "page", async () => {
    await page.goto(args.base + "/", { waitUntil: "load", timeout: 180000 });
    await page.waitForSelector("#txt2img_prompt textarea", { timeout: 180000 });
    await page.waitForSelector("#txt2img_generate", { state: "visible", timeout: 120000 });
    // The Settings page and quicksettings get their values from one load event; give it time to land.
    await page.waitForFunction(() => {
      const el = document.querySelector("#setting_sd_model_checkpoint input, .model_selector input, #quicksettings .gradio-dropdown input");
      return el && el.value;
    }, null, { timeout: 60000 }).catch(() => {});
    await page.waitForTimeout(3000);
    const gradio = await page.evaluate(() => window.gradio_config?.version || null);
    return { title: await page.title(), gradio, tabs: await tabNames() };
  });

  // ------------------------------------------------------------------ the checkpoint selector
  await step(result, log, "checkpoint", async () => {
    const id = await checkpointSelectorId();
    if (!id) throw new Error("no checkpoint selector on the page");
    const list = await dropdownOptions(id);
    return { selector: id, ...list, lists_test_checkpoint: list.options.some((o) => o.includes(cfg.checkpoint)),
      value_is_test_checkpoint: list.value.includes(cfg.checkpoint) };
  });

  // ------------------------------------------------------------------ Settings
  await step(result, log, "settings", async () => {
    const everywhere = await errorBadges(null);
    await clickTab("settings", "Settings");
    await page.waitForSelector("#settings_submit", { state: "visible" });
    const onSettings = await errorBadges("#tab_settings");
    let sectionButton = page.locator("#settings_safetext-button");
    if (!(await sectionButton.count())) {
      sectionButton = page.locator("#settings > .tab-nav button, #settings button[role=tab]").filter({ hasText: /^\s*SafeText\s*$/ }).first();
    }
    const hasSection = (await sectionButton.count()) > 0;
    if (hasSection) await sectionButton.click();
    await page.waitForTimeout(800);
    const section = page.locator("#settings_safetext");
    const visible = hasSection && await section.isVisible();
    const labels = visible ? await page.evaluate(() => {
      const el = document.querySelector("#settings_safetext");
      return [...el.querySelectorAll("label, span")].filter((s) => s.children.length === 0).map((s) => s.textContent.trim())
        .filter((t) => t.length > 3);
    }) : [];
    const inSection = await errorBadges("#settings_safetext");
    let lockFile = null;
    if (visible && await page.locator("#setting_safetext_lock_file input").count()) {
      lockFile = await dropdownOptions("setting_safetext_lock_file");
    }
    const shot = visible ? await screenshot(page, args.out, `${host}_settings_safetext.png`, { element: section }) : null;
    result.screenshots.push(shot);
    // Every other section's values came from the same load event: the sampler section is one to look at.
    const sampler = await page.evaluate(() => {
      const el = document.querySelector("#setting_sd_checkpoint_cache input, #setting_sd_vae_checkpoint_cache input");
      return el ? el.value : null;
    });
    return { error_badges: everywhere, settings_error_badges: onSettings, section_error_badges: inSection,
      has_section: hasSection, section_visible: visible, labels: [...new Set(labels)], lock_file: lockFile,
      sample_value: sampler };
  });

  // ------------------------------------------------------------------ the txt2img panel
  await step(result, log, "panel", async () => {
    await clickTab("txt2img", "txt2img");
    const accordion = page.locator("#safetext_txt2img");
    await accordion.scrollIntoViewIfNeeded();
    const file = page.locator("#safetext_file_txt2img");
    if (!(await file.isVisible())) {
      await page.locator("#safetext_txt2img .label-wrap").first().click();
      await page.waitForTimeout(600);
    }
    const blockText = () => page.evaluate(() => {
      const el = document.querySelector("#safetext_file_txt2img");
      return el ? el.innerText.replace(/\s+/g, " ").trim() : null;
    });
    const list = await dropdownOptions("safetext_file_txt2img");
    const info = await blockText();
    const labels = await page.evaluate(() => [...document.querySelectorAll("#safetext_txt2img label, #safetext_txt2img span")]
      .filter((s) => s.children.length === 0).map((s) => s.textContent.trim()).filter((t) => t.length > 2));
    result.screenshots.push(await screenshot(page, args.out, `${host}_txt2img_panel_at_load.png`, { element: accordion }));
    // The refresh button beside the list asks the server again (the checkpoint is loaded by now).
    let refreshed = null;
    const refresh = page.locator("#safetext_refresh_txt2img");
    if (await refresh.count()) {
      await refresh.click();
      await page.waitForTimeout(2500);
      refreshed = { ...(await dropdownOptions("safetext_file_txt2img")), block_text: await blockText() };
      result.screenshots.push(await screenshot(page, args.out, `${host}_txt2img_panel.png`, { element: accordion }));
    }
    const tuples = (options) => options.filter((o) => TUPLE.test(o) || o.startsWith("('"));
    return { ...list, tuples: [...tuples(list.options), ...tuples(refreshed?.options || [])],
      value_is_tuple: TUPLE.test(list.value), lists_file: list.options.some((o) => o.includes(cfg.safetext_file)),
      block_text: info, labels: [...new Set(labels)], refreshed };
  });

  // ------------------------------------------------------------------ Generate off, then on
  async function generate(label, enabled) {
    await clickTab("txt2img", "txt2img");
    await page.locator("#txt2img_prompt textarea").fill(cfg.prompt || "a photo of a cat sitting on a red sofa");
    await setNumber("txt2img_steps", cfg.steps || 2);
    await setNumber("txt2img_width", cfg.size || 64);
    await setNumber("txt2img_height", cfg.size || 64);
    const seed = page.locator("#txt2img_seed input").first();
    await seed.fill(String(cfg.seed ?? 11));
    await seed.press("Tab");
    const box = page.locator("#safetext_enabled_txt2img input[type=checkbox]");
    if (!(await box.isVisible())) await page.locator("#safetext_txt2img .label-wrap").first().click();
    if (enabled) {
      await box.check();
      await chooseOption("safetext_file_txt2img", cfg.safetext_file);
    } else {
      await box.uncheck();
    }
    const before = await page.evaluate(() => [...document.querySelectorAll("#txt2img_gallery img")].map((i) => i.src));
    const infoBefore = await page.locator("#html_info_txt2img").innerText().catch(() => "");
    const t0 = Date.now();
    await page.locator("#txt2img_generate").click();
    const handle = await page.waitForFunction(({ before, infoBefore }) => {
      const imgs = [...document.querySelectorAll("#txt2img_gallery img")].map((i) => i.src);
      const info = document.querySelector("#html_info_txt2img")?.innerText || "";
      const log = document.querySelector("#html_log_txt2img")?.innerText || "";
      const busy = document.querySelector("#txt2img_interrupt")?.offsetParent !== null;
      if (/error/i.test(log) && !busy) return { error: log };
      const fresh = imgs.find((s) => !before.includes(s));
      if (fresh && info && info !== infoBefore && !busy) return { src: fresh, info };
      return null;
    }, { before, infoBefore }, { timeout: jobTimeout, polling: 500 });
    const outcome = await handle.jsonValue();
    const seconds = (Date.now() - t0) / 1000;
    if (outcome.error) throw new Error(`Generate (${label}) failed: ${outcome.error}`);
    const image = await pixelsOf(page, outcome.src);
    result.screenshots.push(await screenshot(page, args.out, `${host}_generate_${label}.png`));
    return { seconds, info: outcome.info, image };
  }

  // ------------------------------------------------------------------ the training tab (before any generation:
  // a user may well open it first; the webui may not have loaded its checkpoint yet)
  await step(result, log, "training_tab", async () => {
    const tabs = await tabNames();
    const present = tabs.some((t) => t === "SafeText");
    if (present) {
      await clickTab("safetext", "SafeText");
      await page.waitForSelector("#safetext_train_button", { state: "visible" });
    }
    return { present, tabs };
  });

  async function train(label, name, rank = null) {
    const t = cfg.train;
    await clickTab("safetext", "SafeText");
    if (rank !== null) await setNumber("safetext_train_rank", rank);  // the tab's "LoRA rank" row
    await page.locator("#safetext_train_unsafe textarea").fill(t.unsafe.join("\n"));
    await page.locator("#safetext_train_safe textarea").fill(t.safe.join("\n"));
    await page.locator("#safetext_train_replace input[type=checkbox]").check();
    await setNumber("safetext_train_steps", t.steps);
    await setNumber("safetext_train_batch", t.batch_size);
    if (t.learning_rate) await setNumber("safetext_train_lr", t.learning_rate);
    await page.locator("#safetext_train_name textarea, #safetext_train_name input").first().fill(name);
    await page.evaluate(() => {
      window.__safetextSawLive = false;
      const status = document.querySelector("#safetext_train_status");
      if (status) status.setAttribute("data-before", status.innerText);
    });
    const t0 = Date.now();
    await page.locator("#safetext_train_button").click();
    const handle = await page.waitForFunction((fileName) => {
      const el = document.querySelector("#safetext_train_status");
      const status = el?.innerText || "";
      const live = document.querySelector("#safetext_training_live")?.innerText || "";
      if (/Training/.test(live)) window.__safetextSawLive = true;
      // While the job runs, Gradio puts its progress ("queue: 1/1", "processing | ...") above the previous
      // training's status: wait for this training's own outcome.
      const busy = /queue: |processing \|/.test(status);
      const fresh = status !== el?.getAttribute("data-before");
      const outcome = (/Wrote/.test(status) && status.includes(fileName)) || /SafeText: |Interrupted|error/i.test(status);
      return fresh && !busy && outcome ? { status } : null;
    }, name, { timeout: jobTimeout, polling: 250 });
    const { status } = await handle.jsonValue();
    const seconds = (Date.now() - t0) / 1000;
    await page.waitForTimeout(2500); // the live box polls every 2 s
    const sawLive = await page.evaluate(() => !!window.__safetextSawLive);
    const figures = await page.evaluate(() => {
      const table = document.querySelector("#safetext_train_figures table");
      return table ? [...table.querySelectorAll("tr")].map((tr) => [...tr.children].map((c) => c.textContent.trim())) : [];
    });
    const report = await page.evaluate(() => {
      const img = document.querySelector("#safetext_train_report img");
      return img && img.naturalWidth ? { width: img.naturalWidth, height: img.naturalHeight } : null;
    });
    const live = await page.locator("#safetext_training_live").innerText().catch(() => "");
    const tab = page.locator("#tab_safetext");
    result.screenshots.push(await screenshot(page, args.out, `${host}_training_tab_${label}.png`,
      (await tab.count()) ? { element: tab } : {}));
    return { run_seconds: seconds, status, figures, report, live, saw_live_progress: sawLive,
      wrote: /Wrote/.test(status) };
  }

  const canTrain = cfg.train && !skip.has("train") && result.steps.training_tab?.present;
  if (canTrain) await step(result, log, "train", () => train("first", cfg.train.name));

  // ------------------------------------------------------------------ Generate off, then on
  if (!skip.has("generate")) {
    const images = {};
    for (const [label, enabled] of [["off", false], ["on", true]]) {
      await step(result, log, `generate:${label}`, async () => {
        const run = await generate(label, enabled);
        images[label] = run.image;
        const { pixels, ...image } = run.image;
        return { run_seconds: run.seconds, infotext: run.info, image };
      });
    }
    if (images.on && images.off && images.on.pixels.length === images.off.pixels.length) {
      let sum = 0;
      for (let i = 0; i < images.on.pixels.length; i++) sum += Math.abs(images.on.pixels[i] - images.off.pixels[i]);
      result.generate_difference = sum / images.on.pixels.length;
    }
  }

  // Training again once the webui has generated (and so loaded its checkpoint), if the first try wrote nothing.
  if (canTrain && !result.steps.train?.wrote) {
    await step(result, log, "train_after_generate", () => train("after_generate", cfg.train.name + "-2"));
  }

  // A LoRA-sized file from the same tab: the rank row set, the status names the <lora:...> to use.
  if (canTrain && cfg.train_lowrank) {
    await step(result, log, "train_lowrank", () => train("lowrank", cfg.train_lowrank.name, cfg.train_lowrank.rank));
  }
});
