"""The verl launcher: bad input is one line and exit 2, paths are absolute, and the metrics file reaches
every Ray process through ``runtime_env`` (checked on the config and runtime_env the launcher and
``main.fill_defaults`` build, without starting a Ray cluster: Ray binds the machine's network address)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from m2po.pipeline import RunSpec
from m2po.verl_plugin.launch import MODELS, build_overrides, layout, main

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "workflow" / "verl_hydra")


@pytest.mark.parametrize(
    "argv, key, what",
    [
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--staleness", "-4"], "--staleness", "multiple of 4"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--staleness", "6"], "--staleness", "multiple of 4"),
        (["--model", "gpt-5", "--method", "m2po"], "--model", "unknown model"),
        (["--model", "Qwen2.5-Math-7B", "--method", "grpo", "--tau", "0.1"], "--tau", "not of 'grpo'"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--tau", "-1"], "--tau", "finite number >= 0"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--tau", "nan"], "--tau", "finite number >= 0"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--seed", "-1"], "--seed", "seed must be >= 0"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--steps", "0"], "--steps", "steps must be >= 1"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--nodes", "0"], "--nodes", "must be >= 1"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--gpus-per-node", "3"], "--nodes/--gpus-per-node",
         "do not divide"),
        (["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--format-reward", "2"], "--format-reward", "[0, 1]"),
        (["--run-id", "not-a-run"], "--run-id", ""),
        (["--list", "--study", "nope"], "--study", "unknown study"),
        (["--smoke"], "--cpu", "belong to the CPU smoke run"),
        (["--cpu", "--smoke"], "--out", "needs a run directory"),
        (["--cpu", "--cpu-ranks", "0", "--model", "Qwen2.5-Math-7B", "--method", "m2po"], "--cpu-ranks", ">= 1"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(argv, key, what, capsys) -> None:
    assert main([*argv, "--dry-run"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert lines[0].startswith("m2po launch: error: ") and f", {key}, " in lines[0] and what in lines[0]
    assert "Traceback" not in captured.err


def test_negative_staleness_makes_no_run(tmp_path, capsys) -> None:
    """``--staleness -4`` used to launch run ``...-s-4`` with 999 steps; now nothing is created."""
    out = tmp_path / "run"
    assert main(["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--staleness", "-4", "--out", str(out)]) == 2
    assert not out.exists()
    assert "use e.g. 0 or 4" in capsys.readouterr().err


def test_smoke_refuses_to_overwrite_or_resume_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "smoke"
    assert main(["--cpu", "--smoke", "--resume", "--out", str(out)]) == 2
    assert "no smoke checkpoint to resume" in capsys.readouterr().err
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("3")
    assert main(["--cpu", "--smoke", "--out", str(out)]) == 2
    assert "add --resume" in capsys.readouterr().err


def test_every_path_is_absolute_and_the_metrics_file_goes_through_runtime_env(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = RunSpec("Qwen2.5-Math-7B", "m2po", 256, 0)
    overrides = build_overrides(run, out="runs/x", data_dir="data", model_path="weights/7b")
    values = dict(o.split("=", 1) for o in overrides)
    for key in ("trainer.default_local_dir", "data.train_files", "data.val_files", "actor_rollout_ref.model.path"):
        assert os.path.isabs(values[key]) and values[key].startswith(str(tmp_path)), key
    metrics = str(tmp_path / "runs" / "x" / "metrics.jsonl")
    assert values["++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"] == metrics
    # the runtime_env verl's run_ppo gives ray.init: verl's defaults merged with the config's (as run_ppo does)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("m2po_trainer", overrides=overrides)
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env

    from m2po.verl_plugin.config import stale_settings
    from m2po.verl_plugin.main import fill_defaults

    fill_defaults(cfg)
    runtime_env = OmegaConf.merge(get_ppo_ray_runtime_env(cfg), cfg.ray_kwargs.ray_init.get("runtime_env", {}))
    env_vars = OmegaConf.to_container(runtime_env)["env_vars"]
    assert env_vars["VERL_FILE_LOGGER_PATH"] == metrics
    assert "TOKENIZERS_PARALLELISM" in env_vars  # verl's own defaults are kept
    assert stale_settings(cfg)["queue_dir"] == str(tmp_path / "runs" / "x" / "checkpoints" / "stale_queue")


def test_fill_defaults_forwards_the_drivers_metrics_path(tmp_path, monkeypatch) -> None:
    """``VERL_FILE_LOGGER_PATH=rel python -m m2po.verl_plugin.main ...`` by hand: made absolute, passed on."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", "logs/metrics.jsonl")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("m2po_trainer", overrides=["trainer.default_local_dir=ckpt"])
    from m2po.verl_plugin.main import fill_defaults

    fill_defaults(cfg)
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == str(tmp_path / "logs/metrics.jsonl")
    assert cfg.trainer.default_local_dir == str(tmp_path / "ckpt")


def test_layout_is_the_models_unless_given() -> None:
    assert MODELS["qwen2.5-32b"].nodes == 4 and MODELS["qwen2.5-math-7b"].nodes == 1
    assert layout(RunSpec("Qwen2.5-32B", "grpo", 256, 0)) == (4, 8)
    assert layout(RunSpec("Qwen2.5-32B", "grpo", 256, 0), nodes=2) == (2, 8)
    assert layout(RunSpec("Qwen3-1.7B-Base", "m2po", 0, 0)) == (1, 8)


def test_cpu_dry_run_is_torchrun_on_loopback(capsys, tmp_path) -> None:
    argv = ["--cpu", "--model", "Qwen2.5-Math-7B", "--method", "m2po", "--out", str(tmp_path), "--dry-run", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    cmd = out["command"]
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--master-addr=127.0.0.1" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "m2po.verl_plugin.cpu_mode"
    assert "trainer.n_gpus_per_node=2" in cmd
    assert out["env"]["VERL_PLATFORM"] == "cpu" and out["env"]["GLOO_SOCKET_IFNAME"].startswith("lo")
    assert out["env"]["VERL_USE_EXTERNAL_MODULES"] == "m2po.verl_plugin.cpu_platform"


def test_a_launch_runs_its_command_in_the_run_directory(tmp_path) -> None:
    """Not a dry run: the launcher executes the command it builds (a stand-in interpreter records its
    arguments and verl's metrics path), keeping an earlier session's metrics."""
    record = tmp_path / "called.json"
    python = tmp_path / "fake_python"
    python.write_text(
        f'#!/bin/sh\nprintf \'{{"argv": "%s", "metrics": "%s"}}\' "$*" "$VERL_FILE_LOGGER_PATH" > {record}\nexit 7\n'
    )
    python.chmod(0o755)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    argv = ["--model", "Qwen2.5-Math-7B", "--method", "m2po", "--out", str(out), "--python", str(python)]
    assert main(argv) == 7  # the command's own exit status
    called = json.loads(record.read_text())
    assert called["argv"].startswith("-m m2po.verl_plugin.main ")
    assert called["metrics"] == str(out / "metrics.jsonl")
    assert (out / "metrics.session-1.jsonl").read_text() == '{"step": 1}\n'
