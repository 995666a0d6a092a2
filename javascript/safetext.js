// SafeText for AUTOMATIC1111 / Forge: tooltips for the panel and the training tab, and live training status.
// Everything is guarded: outside a webui page (or if the webui changes) this file does nothing and throws nothing.
(function () {
    "use strict";

    var TIPS = {
        "Enable SafeText": "Use the chosen SafeText file: unsafe prompts lose their meaning, safe prompts keep theirs.",
        "SafeText file": "SafeText files from models/safetext. Files marked 'fits' were trained for the loaded checkpoint.",
        "SafeText strength": "0 = the original text encoder, 1 = the fully aligned one.",
        "Blend mode": "Embedding blend is exact at every strength (one more encoder pass). Weight blend adds strength x difference to the weights; it equals the embedding blend only at 0 and 1.",
        "Unsafe categories (shipped prompt sets)": "Which of SafeText's shipped unsafe prompt sets to train on.",
        "Use only my prompts (replace the shipped sets)": "Train only on the prompts typed here.",
        "Lambda (effectiveness weight)": "Weight of the term that moves unsafe prompts away from their meaning.",
        "Train": "Train a SafeText file for the loaded checkpoint. Queued with image generation."
    };

    function addTooltips() {
        try {
            if (typeof titles === "object" && titles !== null) {
                for (var key in TIPS) {
                    if (Object.prototype.hasOwnProperty.call(TIPS, key) && !(key in titles)) {
                        titles[key] = TIPS[key];
                    }
                }
            }
        } catch (e) {
            // never break the page
        }
    }

    function appRoot() {
        try {
            if (typeof gradioApp === "function") {
                return gradioApp();
            }
        } catch (e) {
            // fall through
        }
        return typeof document !== "undefined" ? document : null;
    }

    function escapeHtml(text) {
        return String(text).replace(/[&<>"']/g, function (c) {
            return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
        });
    }

    var lastPhase = null;
    var timer = null;

    function refreshFileLists() {
        var root = appRoot();
        if (!root || !root.querySelector) {
            return;
        }
        ["safetext_refresh_txt2img", "safetext_refresh_img2img"].forEach(function (id) {
            var button = root.querySelector("#" + id);
            if (button && typeof button.click === "function") {
                button.click();
            }
        });
    }

    function render(status) {
        var root = appRoot();
        var box = root && root.querySelector ? root.querySelector("#safetext_training_live") : null;
        if (!box) {
            return;
        }
        var text;
        if (status.running) {
            var pct = status.total ? Math.round(100 * status.step / status.total) : 0;
            text = "<b>Training</b> " + escapeHtml(status.phase) + ": step " + status.step + " / " + status.total +
                " (" + pct + "%)" + (status.loss !== null && status.loss !== undefined ? ", loss " + Number(status.loss).toFixed(4) : "") +
                "<div style='background:#8884;height:6px;margin-top:4px'><div style='background:#4a8;height:6px;width:" + pct + "%'></div></div>";
        } else if (status.phase && status.phase !== "idle") {
            text = "Last training: " + escapeHtml(status.message || status.phase);
        } else {
            text = "";
        }
        box.innerHTML = text;
        if (lastPhase === "train" && status.phase === "done") {
            refreshFileLists();
        }
        lastPhase = status.running ? "train" : status.phase;
    }

    function poll() {
        try {
            var root = appRoot();
            var box = root && root.querySelector ? root.querySelector("#safetext_training_live") : null;
            if (!box || typeof fetch !== "function") {
                return;
            }
            if (box.offsetParent === null && lastPhase !== "train") {
                return; // tab hidden and nothing running: stay quiet
            }
            fetch("./safetext/v1/training").then(function (response) {
                return response.ok ? response.json() : null;
            }).then(function (status) {
                if (status) {
                    render(status);
                }
            }).catch(function () {
                // the API route is missing (old webui): show nothing
            });
        } catch (e) {
            // never break the page
        }
    }

    function start() {
        addTooltips();
        if (timer === null && typeof setInterval === "function" && typeof document !== "undefined") {
            timer = setInterval(poll, 2000);
        }
    }

    try {
        if (typeof onUiLoaded === "function") {
            onUiLoaded(start);
        } else if (typeof document !== "undefined" && document.addEventListener) {
            document.addEventListener("DOMContentLoaded", start);
        }
    } catch (e) {
        // never break the page
    }
})();
