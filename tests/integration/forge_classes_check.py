"""Runs inside Forge's Python (cwd: a Forge checkout): Forge's own ``CLIP``, ``ModelPatcher``, ``LoraLoader``,
``memory_management`` and ``ClassicTextProcessingEngine``, built around a tiny random CLIP-L (the real
architecture, 2 layers), with SafeText's Forge adapter applied to them. Prints one line ``RESULT {json}`` with what
it found; ``test_forge_classes.py`` asserts on it. No checkpoint, no server: seconds, not minutes.

usage: <forge python> forge_classes_check.py SAFETEXT_ROOT
"""
import importlib.util
import json
import sys
import types

safetext_root = sys.argv[1]
sys.argv = [sys.argv[0], "--always-cpu"]  # backend.args parses the command line on import
sys.path[:0] = [".", "packages_3rdparty"]  # as modules_forge/initialization.py does
import torch  # noqa: E402

# classic_engine reads ``modules.shared.opts``: only the options it uses, not the whole webui.
shared = types.ModuleType("modules.shared")
shared.opts = types.SimpleNamespace(emphasis="Original", comma_padding_backtrack=20,
                                    textual_inversion_add_hashes_to_infotext=False)
modules = types.ModuleType("modules")
modules.shared, modules.__path__ = shared, []
sys.modules["modules"], sys.modules["modules.shared"] = modules, shared
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402
from backend.nn.clip import IntegratedCLIP
from backend.patcher.clip import CLIP
from backend.text_processing.classic_engine import ClassicTextProcessingEngine
from backend import memory_management
spec = importlib.util.spec_from_file_location("safetext_bootstrap", f"{safetext_root}/safetext_core/bootstrap.py")
boot = importlib.util.module_from_spec(spec); spec.loader.exec_module(boot)
boot.register("safetext_core", f"{safetext_root}/safetext_core"); boot.register("safetext_webui", f"{safetext_root}/safetext_webui")
from safetext_core.tokenizer import load_clip_tokenizer
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.safetext_file import SafeTextFile
torch.manual_seed(0)
config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
tokenizer = load_clip_tokenizer()
te = IntegratedCLIP(CLIPTextModel, config)
clip = CLIP(model_dict={"clip_l": te}, tokenizer_dict={"clip_l": tokenizer})
engine = ClassicTextProcessingEngine(text_encoder=clip.cond_stage_model.clip_l, tokenizer=tokenizer, embedding_dir=None,
                                     embedding_key="clip_l", embedding_expected_shape=32, text_projection=False,
                                     minimal_clip_skip=1, clip_skip=1, return_pooled=False, final_layer_norm=True)
model = types.SimpleNamespace(text_processing_engine=engine, forge_objects=types.SimpleNamespace(clip=clip),
                              forge_objects_original=types.SimpleNamespace(clip=clip))
def cond(prompt="a photo of a cat"):
    memory_management.load_model_gpu(model.forge_objects.clip.patcher)
    with torch.no_grad():
        return engine([prompt])
state = {k[len("clip_l.transformer."):]: v.detach().clone() for k, v in clip.cond_stage_model.state_dict().items()
         if k.startswith("clip_l.transformer.") and ".wrapped." not in k}
gen = torch.Generator().manual_seed(1)
deltas = {k: 0.05 * torch.randn(v.shape, generator=gen) for k, v in state.items()
          if ".mlp.fc1." in k or "final_layer_norm" in k or "token_embedding" in k}
from safetext_webui import forge, hijack
from safetext_webui.args import Settings
fp = forge.loaded_fingerprints(model)
out = {"fingerprint_matches": fp == {"clip_l": fingerprint_state_dict(state)}}
file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints=fp)
def reference(strength, ds=deltas):
    ref = CLIPTextModel(config); ref.load_state_dict({k: (v + strength * ds[k]) if k in ds else v for k, v in state.items()}, strict=False)
    toks = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return ref.eval()(toks).last_hidden_state
base = cond()
out["off_matches_reference"] = bool(torch.allclose(base, reference(0.0), atol=1e-5))
before = {k: v.clone() for k, v in clip.cond_stage_model.state_dict().items()}
for mode, strength in (("weight", 0.5), ("embedding", 0.5), ("weight", 1.0)):
    forge.activate(types.SimpleNamespace(sd_model=model), file, Settings(True, "f.safetensors", strength, mode))
    got = cond()
    hijack.deactivate()
    want = torch.lerp(reference(0.0), reference(1.0), strength) if mode == "embedding" else reference(strength)
    out[f"{mode}@{strength}"] = {"matches": bool(torch.allclose(got, want, atol=1e-4)), "max_err": float((got - want).abs().max()),
                                 "differs_from_off": bool(not torch.allclose(got, base, atol=1e-4))}
out["weights_untouched"] = all(torch.equal(before[k], v) for k, v in clip.cond_stage_model.state_dict().items())
out["off_after"] = bool(torch.equal(cond(), base))
# A LoRA through Forge's own patcher (token embedding + fc1): Forge drops the token-embedding patch; SafeText must not.
emb_only = {k: v for k, v in deltas.items() if "token_embedding" in k}
lora = {"clip_l.transformer.text_model.embeddings.token_embedding.weight": ("diff", (emb_only["text_model.embeddings.token_embedding.weight"],))}
with_lora = clip.clone(); with_lora.add_patches(filename="lora", patches=lora, strength_patch=1.0)
model.forge_objects.clip = with_lora
out["forge_lora_on_token_embedding_changes_output"] = bool(not torch.allclose(cond(), base, atol=1e-6))
model.forge_objects.clip = clip
cond()
file2 = SafeTextFile(family="sd1", deltas={"clip_l": emb_only}, fingerprints=fp)
forge.activate(types.SimpleNamespace(sd_model=model), file2, Settings(True, "g.safetensors", 1.0, "weight"))
got = cond(); hijack.deactivate()
out["safetext_token_embedding_only"] = {"matches": bool(torch.allclose(got, reference(1.0, emb_only), atol=1e-4)),
                                        "differs_from_off": bool(not torch.allclose(got, base, atol=1e-4))}
print("RESULT " + json.dumps(out))
