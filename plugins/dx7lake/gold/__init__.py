"""Gold layer: silver phrases rendered through Dexed to FLAC, with manifests.

Owns: DX7 voices (``patches``), the synth engines (``engine``: dexed-py, ``vst3``: the
plugin), effects and mastering (``effects``, ``master``), FLAC encoding (``flac``), MP3 previews
(``preview``), the process pool (``pool``), render profiles (``profiles``, named in ``profiles.yml``),
the lake layout of renders and manifests (``render``) and the one-time move of a lake from
before profiles (``migrate``).
May import: ``config``, ``lake``. Never ``warehouse`` (stages hand it silver rows),
``quality``, ``browser``, ``metabase`` or ``orchestration``.
See docs/ARCHITECTURE.md.
"""
