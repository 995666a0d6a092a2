"""Tests of what both host adapters share (safetext_core.hosting): names, listing, cache, reuse, patches."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from safetext_core import AlignConfig, SafeTextFile, SafeTextFileError
from safetext_core.hosting import (FileCache, FileNameError, check_file_name, comfy_patches, list_files,
                                   new_file_path, resolve_file, same_training)

FP = "st1:abcdef123456:[1.0, 2.0, 3.0]"
OTHER_FP = "st1:999999999999:[7.0, 8.0, 9.0]"


def _file(folder, name, fingerprint=FP, config=None, hashes=None, scale=1.0):
    deltas = {"clip_l": {"text_model.encoder.layers.0.mlp.fc1.weight": scale * torch.ones(4, 4)}}
    file = SafeTextFile(family="sd1", deltas=deltas, fingerprints={"clip_l": fingerprint}, base_name="tiny",
                        config=config or json.loads(AlignConfig().to_json()), prompt_hashes=hashes or {"unsafe": "h"})
    return file.save(folder / name)


@pytest.mark.parametrize("name", ["", "   ", None, 3, "../x", "a/b", "/etc/passwd", "C:evil", "a\\b", ".hidden",
                                  "x\x00y", "CON", "nul.safetensors", "LPT1", "trailing.", "a" * 300, "tab\tname",
                                  "pipe|name", "what?"])
def test_bad_names_are_refused_with_a_clear_error(name):
    with pytest.raises(FileNameError):
        check_file_name(name)


def test_good_names_get_the_suffix_and_sub_folders_only_when_allowed():
    assert check_file_name(" my file ") == "my file.safetensors"
    assert check_file_name("x.safetensors") == "x.safetensors"
    assert check_file_name("sub/x", sub_folders=True) == "sub/x.safetensors"
    for bad in ("sub/../x", "sub//x", "./x", "sub/.x"):
        with pytest.raises(FileNameError):
            check_file_name(bad, sub_folders=True)


def test_resolve_and_new_paths_stay_inside_the_folder(tmp_path):
    folder = tmp_path / "safetext"
    path = new_file_path(folder, "model")
    assert path == folder.resolve() / "model.safetensors" and folder.is_dir()
    _file(folder, "model.safetensors")
    assert resolve_file(folder, "model") == path
    with pytest.raises(SafeTextFileError, match="not found"):
        resolve_file(folder, "missing")
    outside = tmp_path / "outside.safetensors"
    _file(tmp_path, "outside.safetensors")
    os.symlink(outside, folder / "link.safetensors")
    with pytest.raises(FileNameError, match="would leave"):
        resolve_file(folder, "link")


def test_listing_reads_headers_marks_fit_and_damage(tmp_path):
    folder = tmp_path / "safetext"
    _file(folder, "a.safetensors")
    _file(folder, "b.safetensors", fingerprint=OTHER_FP)
    (folder / "c.safetensors").write_bytes(b"not a safetensors file")
    save_file({"x": torch.zeros(1)}, str(folder / "d.safetensors"))  # a plain safetensors file: not listed
    entries = {e["name"]: e for e in list_files(folder, {"clip_l": FP})}
    assert set(entries) == {"a.safetensors", "b.safetensors", "c.safetensors"}
    assert entries["a.safetensors"]["fits"] is True and entries["a.safetensors"]["family"] == "sd1"
    assert entries["b.safetensors"]["fits"] is False
    assert "damaged" in entries["c.safetensors"]["error"]
    assert all(e["fits"] is None for e in list_files(folder, None) if "error" not in e)


def test_cache_reads_a_file_once_and_again_when_it_changes(tmp_path):
    cache = FileCache()
    path = _file(tmp_path, "m.safetensors")
    first = cache.load(path)
    assert cache.load(path) is first
    _file(tmp_path, "m.safetensors", scale=2.0)
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    second = cache.load(path)
    assert second is not first and float(next(iter(second.deltas["clip_l"].values()))[0, 0]) == 2.0
    with pytest.raises(SafeTextFileError):
        cache.load(tmp_path / "missing.safetensors")


def test_same_training_compares_defining_fields_with_defaults_for_new_ones(tmp_path):
    config = AlignConfig(steps=10)
    saved = json.loads(config.to_json())
    saved.pop("anchor_prompt")  # a setting added after the file was made, left at its default
    path = _file(tmp_path, "m.safetensors", config=saved, hashes={"unsafe": "h"})
    file = SafeTextFile.load(path)
    assert same_training(file, config, {"unsafe": "h"}, {"clip_l": FP}, "sd1")
    assert same_training(file, AlignConfig(steps=10, checkpoint_every=5), {"unsafe": "h"}, {"clip_l": FP}, "sd1")
    assert not same_training(file, AlignConfig(steps=10, anchor_prompt="x"), {"unsafe": "h"}, {"clip_l": FP}, "sd1")
    assert not same_training(file, AlignConfig(steps=11), {"unsafe": "h"}, {"clip_l": FP}, "sd1")
    assert not same_training(file, config, {"unsafe": "other"}, {"clip_l": FP}, "sd1")
    assert not same_training(file, config, {"unsafe": "h"}, {"clip_l": OTHER_FP}, "sd1")
    assert not same_training(file, config, {"unsafe": "h"}, {"clip_l": FP}, "sdxl")


@pytest.mark.parametrize("field, legacy", [("lr_schedule", "constant"), ("pair_share", 0.0), ("mine_sample", 0),
                                           ("safe_cos_weight", 0.0), ("safe_cos_per_token", False)])
def test_a_file_from_before_a_setting_counts_as_trained_the_old_way(tmp_path, field, legacy):
    # Files made before the cosine schedule / pairs / sampled mining existed trained without them: requeueing
    # today's defaults must train anew, not reuse the old file; asking for the old behaviour may reuse it.
    config = AlignConfig(steps=10)
    saved = json.loads(config.to_json())
    saved.pop(field)
    file = SafeTextFile.load(_file(tmp_path, "old.safetensors", config=saved, hashes={"unsafe": "h"}))
    assert not same_training(file, config, {"unsafe": "h"}, {"clip_l": FP}, "sd1")
    assert same_training(file, AlignConfig(steps=10, **{field: legacy}), {"unsafe": "h"}, {"clip_l": FP}, "sd1")


def test_comfy_patches_use_comfyui_keys(tmp_path):
    file = SafeTextFile.load(_file(tmp_path, "m.safetensors"))
    patches = comfy_patches(file)
    key = "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    assert list(patches) == [key] and patches[key][0] == "diff" and torch.equal(patches[key][1][0], torch.ones(4, 4))


def test_how_factors_are_made_counts_only_for_low_rank_files(tmp_path):
    # A low-rank file from before compression trained adapters: today's "auto" (compress, for CLIP) trains anew. For a
    # full-weight file the setting means nothing: an old one stays reusable.
    for rank in (0, 8):
        config = AlignConfig(steps=10, rank=rank)
        saved = json.loads(config.to_json())
        saved.pop("lowrank_method")
        file = SafeTextFile.load(_file(tmp_path, f"r{rank}.safetensors", config=saved, hashes={"unsafe": "h"}))
        assert same_training(file, config, {"unsafe": "h"}, {"clip_l": FP}, "sd1") == (rank == 0)
        assert same_training(file, AlignConfig(steps=10, rank=rank, lowrank_method="adapters"), {"unsafe": "h"},
                             {"clip_l": FP}, "sd1")
