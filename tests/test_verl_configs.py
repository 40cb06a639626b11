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

from m2po.staleness import StalenessSchedule
from m2po.verl_plugin import M2POPolicyLossConfig
from m2po.verl_plugin.config import stale_settings, updates_per_batch
from m2po.verl_plugin.launch import METHODS, MODELS, build_overrides, main, paper_runs

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "workflow" / "verl")
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


def test_paper_run_list() -> None:
    runs = paper_runs()
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids))
    assert {r.model for r in runs} == set(MODELS)
    table1 = paper_runs("table1")
    assert len(table1) == 6 * 5
    assert {(r.method, r.staleness) for r in paper_runs("fig2")} == {("grpo", s) for s in (0, 32, 64, 128, 256)}
    assert {(r.method, r.staleness) for r in paper_runs("fig11")} == {("m2po", s) for s in (0, 32, 64, 128, 256)}
    assert {r.method for r in paper_runs("fig6")} == {"cispo", "decoupled_ppo", "topr", "gppo", "m2po"}
    assert {r.tau for r in paper_runs("fig8")} >= {0.0, 0.04, 0.16}
    assert "qwen2.5-math-7b-m2po-s256-seed0" in ids and "qwen2.5-math-7b-m2po-s256-seed0-tau0.16" in ids


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_paper_run_composes(model: str) -> None:
    runs = [r for r in paper_runs() if r.model == model]
    assert runs
    for run in runs:
        cfg = run_config(build_overrides(run))
        check(cfg)
        assert cfg.trainer.experiment_name == run.run_id
        assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == run.method
        assert cfg.trainer.total_training_steps == 1000 + run.staleness // 4
        assert cfg.actor_rollout_ref.actor.policy_loss.tau == run.tau


def test_every_method_and_layout_composes() -> None:
    base = paper_runs("table1")[0]
    layouts = [(1, 8)] * len(METHODS) + [(2, 8), (1, 1)]
    for method, (nodes, gpus) in zip([*METHODS, "m2po", "grpo"], layouts):
        run = type(base)(base.model, method, 256)
        cfg = run_config(build_overrides(run, nodes, gpus, mask_scope="minibatch", format_reward=0.1))
        check(cfg)
        assert cfg.reward.custom_reward_function.reward_kwargs.format_reward == 0.1
        assert cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node == nodes * gpus


def test_override_application_equals_full_compose() -> None:
    for run in (paper_runs("fig6")[0], paper_runs("fig8")[-1]):
        overrides = build_overrides(run, 2, 8)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            full = compose("m2po_trainer", overrides=overrides)
        assert OmegaConf.to_container(full) == OmegaConf.to_container(run_config(overrides))


def test_launcher_cli(capsys) -> None:
    assert main(["--list", "--study", "fig6"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert len(listed) == 5 and all("llama-3.2-3b-instruct" in line for line in listed)
    argv = ["--model", "qwen2.5-math-7b", "--method", "m2po", "--staleness", "256", "--nodes", "2"]
    assert main([*argv, "--gpus-per-node", "4", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == "qwen2.5-math-7b-m2po-s256-seed0"
    assert out["command"][:3] == ["python3", "-m", "m2po.verl_plugin.main"]
    assert "m2po.staleness=256" in out["command"] and "trainer.nnodes=2" in out["command"]
    assert out["env"]["VERL_FILE_LOGGER_PATH"].endswith("qwen2.5-math-7b-m2po-s256-seed0/metrics.jsonl")
    with pytest.raises(ValueError, match="multiple of 4"):
        main(["--model", "qwen2.5-math-7b", "--method", "m2po", "--staleness", "6", "--dry-run"])
    with pytest.raises(ValueError, match="divide"):
        main([*argv, "--gpus-per-node", "3", "--dry-run"])
