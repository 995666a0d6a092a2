"""A test-only ComfyUI custom node: save a CONDITIONING's tensors to the output folder as safetensors.

The integration tests link this folder into the throw-away ComfyUI's custom_nodes next to the pack, so a workflow
sent over HTTP can hand back the exact conditioning a text-encode node made (``output/<name>.safetensors``:
``cond.<i>`` and, when there is one, ``pooled.<i>`` for each entry). It is never installed with the pack.
"""
import os

import folder_paths
from safetensors.torch import save_file


class SafeTextTestSaveConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "name": ("STRING", {"default": "conditioning"})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = "testing"

    def save(self, conditioning, name):
        if os.path.basename(name) != name or not name:
            raise ValueError(f"bad name {name!r}")
        tensors = {}
        for index, (cond, extra) in enumerate(conditioning):
            tensors[f"cond.{index}"] = cond.detach().float().cpu().contiguous()
            pooled = extra.get("pooled_output")
            if pooled is not None:
                tensors[f"pooled.{index}"] = pooled.detach().float().cpu().contiguous()
        save_file(tensors, os.path.join(folder_paths.get_output_directory(), name + ".safetensors"))
        return {}


NODE_CLASS_MAPPINGS = {"SafeTextTestSaveConditioning": SafeTextTestSaveConditioning}
