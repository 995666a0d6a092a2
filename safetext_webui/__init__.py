"""SafeText's AUTOMATIC1111 / Forge adapter: translates the webui's objects into ``safetext_core`` calls.

Loaded by ``scripts/safetext.py`` (through ``safetext_core/bootstrap.py``), inside a webui only. By concern:

* :mod:`.args` — the panel's values as one typed :class:`~.args.Settings` (Script, infotext, API), checked
* :mod:`.settings` — options in Settings, the SafeText folder, the operator lock
* :mod:`.files` — the chosen file, whether it fits the loaded checkpoint, the panel's file list
* :mod:`.hijack` — A1111: text-encoder discovery, the ``encode_with_transformers`` wrappers, fail-closed
* :mod:`.forge` — Forge and Forge Neo: the same wrapper on their text engines, fingerprints from original weights
* :mod:`.infotext` — generation parameters written and pasted back
* :mod:`.script` — the always-visible panel (``scripts.Script``) and the callbacks it registers
* :mod:`.api` — request checks for ``/sdapi/v1/txt2img|img2img`` and the ``/safetext/v1`` routes
* :mod:`.training`, :mod:`.training_tab` — training for the loaded checkpoint, and its tab
"""
__version__ = "0.1.0"
