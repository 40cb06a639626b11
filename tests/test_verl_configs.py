"""Every paper run composes against verl 0.9.1's config schema (Hydra compose on verl's config dir).

A Hydra compose of verl's ``ppo_trainer`` tree parses ~30 YAML files (~2 s on this machine), so the
test composes once per model group (``m2po_model=<model>``) and applies each run's remaining overrides
with Hydra's own override machinery — what ``compose`` itself does after building the defaults tree
(``test_override_application_equals_full_compose`` checks that on two runs). Each run's config is then
turned into verl's actor dataclasses (strict: unknown keys raise), checked by verl's ``validate_config``
and by the M2PO trainer's own settings (staleness a multiple of the updates per step).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from m2po.pipeline import RunSpec
from m2po.staleness import StalenessSchedule
from m2po.verl_plugin import M2POPolicyLossConfig
from m2po.verl_plugin.config import stale_settings, updates_per_batch
from m2po.verl_plugin.launch import METHODS, MODELS, build_overrides, main, model_key, paper_runs

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "workflow" / "verl_hydra")
_cache: dict[str, object] = {}


def compose_model(model: str):
    if model not in _cache:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            _cache[model] = compose("m2po_trainer", overrides=[f"m2po_model={model}"])
    return _cache[model]


def run_config(overrides: list[str]):
    group = [o for o in overrides if o.startswith("m2po_model=")]
    assert len(group) == 1
    cfg = copy.deepcopy(compose_model(group[0].split("=", 1)[1]))
    rest = OverridesParser.create().parse_overrides([o for o in overrides if o not in group])
    ConfigLoaderImpl._apply_overrides_to_config(rest, cfg)
    return cfg


def check(cfg) -> None:
    OmegaConf.resolve(cfg)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor.policy_loss, M2POPolicyLossConfig)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert not need_reference_policy(cfg) and not need_critic(cfg)  # no KL, no critic (App. B)
    n = updates_per_batch(cfg)
    assert n == 4
    StalenessSchedule(stale_settings(cfg)["staleness"], n)
    assert cfg.trainer.use_v1 is False and cfg.trainer.balance_batch is True


def test_paper_runs_are_the_pipeline_grid() -> None:
    runs = paper_runs()
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids)) > 40
    assert {model_key(r.model) for r in runs} == set(MODELS)
    main_block = {(r.model, r.method, r.staleness) for r in paper_runs("main")} | {
        (r.model, r.method, r.staleness) for r in paper_runs("on_policy")
    }
    assert len(main_block) == 6 * 5  # six models x {grpo s0, grpo s256, grpo_notr, m2po, gspo s256}
    assert {r.staleness for r in paper_runs("staleness_sweep")} == {0, 32, 64, 128, 256}
    assert {r.method for r in paper_runs("baselines")} == {"cispo", "decoupled_ppo", "topr", "gppo", "m2po"}
    assert {r.tau for r in paper_runs("tau_sweep")} >= {0.0, 0.16}
    assert "Qwen2.5-Math-7B-m2po-s256-seed0" in ids


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_paper_run_composes(model: str) -> None:
    runs = [r for r in paper_runs() if model_key(r.model) == model]
    assert runs
    for run in runs:
        cfg = run_config(build_overrides(run))
        check(cfg)
        assert cfg.trainer.experiment_name == run.run_id
        assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == run.method
        assert cfg.trainer.total_training_steps == 1000 + run.staleness // 4
        assert cfg.actor_rollout_ref.actor.policy_loss.tau == (0.04 if run.tau is None else run.tau)
        assert cfg.m2po.staleness == run.staleness


def test_every_method_and_layout_composes() -> None:
    layouts = [(1, 8)] * len(METHODS) + [(2, 8), (1, 1)]
    for method, (nodes, gpus) in zip([*METHODS, "m2po", "grpo"], layouts):
        run = RunSpec("Qwen2.5-Math-7B", method, 256, 0)
        cfg = run_config(build_overrides(run, nodes, gpus, mask_scope="minibatch", format_reward=0.1))
        check(cfg)
        assert cfg.reward.custom_reward_function.reward_kwargs.format_reward == 0.1
        assert cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node == nodes * gpus


def test_override_application_equals_full_compose() -> None:
    for run in (paper_runs("baselines")[0], paper_runs("tau_sweep")[-1]):
        overrides = build_overrides(run, 2, 8)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            full = compose("m2po_trainer", overrides=overrides)
        assert OmegaConf.to_container(full) == OmegaConf.to_container(run_config(overrides))


def test_launcher_cli(capsys, tmp_path) -> None:
    assert main(["--list", "--study", "baselines"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert len(listed) == 5 and all(line.startswith("Llama-3.2-3B-Instruct-") for line in listed)
    argv = ["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--staleness", "256", "--nodes", "2"]
    out_dir = str(tmp_path / "run")
    assert main([*argv, "--gpus-per-node", "4", "--out", out_dir, "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == "Qwen2.5-Math-7B-m2po-s256-seed0"
    assert out["command"][:3] == ["python3", "-m", "m2po.verl_plugin.main"]
    assert "m2po.staleness=256" in out["command"] and "trainer.nnodes=2" in out["command"]
    assert f"trainer.default_local_dir={out_dir}/checkpoints" in out["command"]
    assert out["env"]["VERL_FILE_LOGGER_PATH"] == f"{out_dir}/metrics.jsonl"
    assert main(["--run-id", "Qwen3-1.7B-Base-m2po-s256-seed0-tau0.16", "--dry-run", "--json"]) == 0
    assert "actor_rollout_ref.actor.policy_loss.tau=0.16" in json.loads(capsys.readouterr().out)["command"]
    # bad input: one line and exit status 2 (tests/test_verl_launch.py has every case)
    assert main(["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--staleness", "6", "--dry-run"]) == 2
    assert "multiple of 4" in capsys.readouterr().err
    assert main(["--model", "gpt-5", "--method", "m2po", "--dry-run"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_loss_params_are_checked_through_the_losss_signature() -> None:
    from m2po.config import ConfigError
    from m2po.verl_plugin.config import M2POPolicyLossConfig, policy_loss_settings

    cfg = M2POPolicyLossConfig(loss_mode="m2po.gspo", loss_params={"clip_low": "3e-4", "clip_high": 4})
    assert cfg.loss_params == {"clip_low": 3e-4, "clip_high": 4.0}
    assert all(type(v) is float for v in cfg.loss_params.values())
    with pytest.raises(ConfigError, match=r"policy_loss\.loss_params\.tau"):
        M2POPolicyLossConfig(loss_mode="m2po", loss_params={"tau": "abc"})
    # a plain verl node: the dataclass's defaults, except the scope verl's plain worker can do
    assert policy_loss_settings({}) == {
        "tau": 0.04, "mask_scope": "microbatch", "floor_low": None, "floor_high": None,
        "dual_clip": False, "loss_agg_mode": None, "loss_params": {},
    }  # fmt: skip
