"""The embedded CPU engine: a tiny character-level transformer, a batched KV-cache sampler, the
verifiable arithmetic task and its supervised warm start. Import the submodules directly
(``m2po.engine.model``, ``.sampler``, ``.task``, ``.sft``, ``.tokenizer``)."""
