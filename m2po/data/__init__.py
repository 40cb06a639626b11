"""The data stage: source specs (``data/sources.yaml``) -> parquet in verl's RL schema + manifests.

Modules: :mod:`.spec` (typed specs), :mod:`.readers` (files and hub), :mod:`.normalize` (the one
row normaliser, answer rules, prompt), :mod:`.collect` (validation, skips, fallback),
:mod:`.build` (orchestration, writing), :mod:`.gtcheck` (math-verify parse check),
:mod:`.contamination`, :mod:`.report`, :mod:`.cli` (``m2po data build``). See docs/data.md.
"""
