"""Run by ComfyUI's own Python inside a ComfyUI checkout (cwd): the enforced mode against ComfyUI's real ``CLIP``
and ``ModelPatcher`` in one process, no server (seconds instead of minutes).

    python comfy_enforce_inproc.py REPO FOLDER     (prints one line: RESULT {json})

A random full-size CLIP-L text encoder is loaded through ``comfy.sd.load_text_encoder_state_dicts``, a SafeText
file with random differences is written for it into FOLDER, and the pack (imported from REPO as ComfyUI imports
it) is switched to enforced mode at strength 0.75. Reported: the enforced encode equals Load & Apply at 0.75 and
differs from the original, one enforced hook, a clip-skip clone keeps it, the signals, the refusal for another
checkpoint and the backstop's refusal of a direct encoder call. Used by test_comfyui_enforced.py.
"""
import sys
REPO, FOLDER = sys.argv[1], sys.argv[2]
sys.argv = ["main.py", "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import importlib.util, json, logging, os
logging.basicConfig(level=logging.INFO)
import torch
import folder_paths, comfy.sd
sys.path.insert(0, REPO + "/tests/integration")
from comfy_checkpoints import clip_hf_shapes, _draw

spec = importlib.util.spec_from_file_location("stp", REPO + "/__init__.py", submodule_search_locations=[REPO])
pack = importlib.util.module_from_spec(spec); sys.modules["stp"] = pack; spec.loader.exec_module(pack)
folder_paths.folder_names_and_paths["safetext"] = ([FOLDER], {".safetensors"})
enforce, comfy_clip = sys.modules["stp.nodes.enforce"], sys.modules["stp.nodes.comfy_clip"]
signals = sys.modules["stp.nodes.signals"]
from safetext_core.safetext_file import SafeTextFile

gen = torch.Generator().manual_seed(0)
def make_clip(seed):
    g = torch.Generator().manual_seed(seed)
    sd = {k: _draw(k, s, g) for k, s in clip_hf_shapes("text_model.").items()}
    return comfy.sd.load_text_encoder_state_dicts([sd], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)

def encode(clip, text="graphic murder photo"):
    return clip.encode_from_tokens(clip.tokenize(text))

clip = make_clip(0)
prints = comfy_clip.fingerprints(clip)
base = comfy_clip.base_state_dicts(clip)["clip_l"]
deltas = {k: 0.05 * torch.randn(v.shape, generator=gen) for k, v in base.items() if ".mlp.fc2." in k or "final_layer_norm" in k}
SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints=prints, base_name="t").save(os.path.join(FOLDER, "t.safetensors"))
original = encode(clip)
ref_clip, _ = comfy_clip.apply_file(make_clip(0), SafeTextFile.load(os.path.join(FOLDER, "t.safetensors")), 0.75)
reference = encode(ref_clip)
enforce.CONFIG = enforce.EnforceConfig(enabled=True, strength=0.75, log_signal=True, log_prompts=True)
enforce.install()
fresh = make_clip(0)   # built while enforced: backstop on its encoder
got = encode(fresh)
lora = fresh.clone(); lora.clip_layer(-2)
skipped = encode(lora)
out = {"equal_reference": bool(torch.equal(got, reference)), "differs_from_original": not torch.equal(got, original),
       "hooks": len(enforce._enforced_hooks(fresh.patcher)), "skip_differs": not torch.equal(skipped, got),
       "signals": signals.recent()[-2:]}
try:
    encode(make_clip(1)); out["other"] = "NOT REFUSED"
except Exception as e:
    out["other"] = f"{type(e).__name__}: {e}"[:160]
bare = make_clip(0)
try:
    with torch.no_grad():
        bare.cond_stage_model.clip_l([[49406, 320, 49407] + [49407] * 74])
    out["backstop"] = "NOT REFUSED"
except Exception as e:
    out["backstop"] = f"{type(e).__name__}: {str(e)[:100]}"
print("RESULT", json.dumps(out))
