"""Flags derived from a config's fields (``m2po.config.add_config_arguments``), ``m2po eval``'s flags derived
from :class:`EvalConfig`, and ``loss_params`` values checked through each loss's signature."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from m2po.config import ConfigError, add_config_arguments, coerce_kwargs, config_from_args, load_config, option
from m2po.eval import cli_eval, cli_stage
from m2po.eval.eval_config import EvalConfig


@dataclasses.dataclass(kw_only=True)
class _Demo:
    name: str = option(help="a required name")
    count: int | None = option(None, "how many")
    mode: Literal["a", "b"] = option("a", "a choice")
    tags: list[str] = option(["x"], "one or more tags")
    rate: float = option(0.5, "a rate", metadata={"flag": "--lr"})
    where: Path | None = option(None, "a folder")
    colour: bool = option(True, "in colour")
    loud: bool = option(False, "loudly")


def _parser(**changes) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_config_arguments(p, _Demo, [f.name for f in dataclasses.fields(_Demo)], **changes)
    return p


def test_flags_are_derived_from_the_fields():
    p = _parser()
    flags = {s: a for a in p._actions for s in a.option_strings}
    assert set(flags) == {
        "-h",
        "--help",
        "--name",
        "--count",
        "--mode",
        "--tags",
        "--lr",
        "--where",
        "--no-colour",
        "--loud",
    }
    assert flags["--name"].required and flags["--name"].help == "a required name"
    assert flags["--mode"].choices == ("a", "b")
    assert flags["--lr"].dest == "rate"
    args = p.parse_args(["--name", "n", "--count", "3", "--tags", "u", "v", "--lr", "2", "--where", "d", "--no-colour"])
    assert config_from_args(_Demo, args) == _Demo(
        name="n", count=3, tags=["u", "v"], rate=2.0, where=Path("d"), colour=False, loud=False
    )
    defaults = config_from_args(_Demo, p.parse_args(["--name", "n"]))
    assert defaults == _Demo(name="n")  # every default is the field's own
    assert config_from_args(_Demo, p.parse_args(["--name", "n"]), count=7).count == 7
    with pytest.raises(argparse.ArgumentError):
        p.parse_args(["--name", "n", "--mode", "c"])


def test_changes_replace_one_flag_keywords():
    p = _parser(name={"required": False, "default": "anon"}, mode={"default": None})
    args = p.parse_args([])
    assert args.name == "anon" and args.mode is None


def test_a_field_without_a_flag_type_is_refused():
    @dataclasses.dataclass
    class Bad:
        table: dict[str, int] = option({}, "a mapping")

    with pytest.raises(TypeError, match="Bad.table"):
        add_config_arguments(argparse.ArgumentParser(), Bad, ["table"])


# -- m2po eval / eval-run ----------------------------------------------------------------------------------

#: the flags of ``m2po eval`` before EvalConfig declared them (written out by hand: the oracle)
EVAL_FLAGS = {
    "--model", "--out", "--model-id", "--update", "--memo", "--backend", "--benchmarks", "--data", "--k", "--limit",
    "--temperature", "--top-p", "--max-new-tokens", "--seed", "--extraction", "--workers", "--timeout", "--no-memo",
    "--batch-problems", "--batch-size", "--device", "--threads", "--dtype", "--tensor-parallel-size",
    "--max-model-len", "--suites", "--no-progress",
}  # fmt: skip
STAGE_FLAGS = (EVAL_FLAGS - {"--model", "--out", "--model-id", "--update"}) | {
    "--run", "--every", "--step", "--collect", "--list", "--merge-dir",
}  # fmt: skip


def _flags(add) -> set[str]:
    p = argparse.ArgumentParser()
    add(p)
    return {s for a in p._actions for s in a.option_strings} - {"-h", "--help"}


def test_eval_flags_are_kept():
    assert _flags(cli_eval.add_arguments) == EVAL_FLAGS
    assert _flags(cli_stage.add_arguments) == STAGE_FLAGS
    assert "sleep_between_batches" not in {f.name for f in dataclasses.fields(EvalConfig)}  # no test hook


def test_eval_flags_fill_the_config(tmp_path):
    p = argparse.ArgumentParser()
    cli_eval.add_arguments(p)
    argv = ["--model", "m", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--backend", "vllm", "--k", "2"]
    args = p.parse_args([*argv, "--timeout", "3", "--no-progress", "--max-model-len", "4096", "--suites", "s.yaml"])
    cfg = cli_eval.eval_config(args, args.model, args.out_dir, args.update, args.model_id)
    assert cfg == EvalConfig(
        model="m", backend="vllm", benchmarks=["paper"], data_dir=tmp_path, out_dir=tmp_path / "o", k=2,
        extraction="boxed", timeout_s=3.0, suites_path="s.yaml", progress=False,
        backend_kwargs={"tensor_parallel_size": 1, "max_model_len": 4096},
        memo_dir=tmp_path / "o" / "cache" / "verdicts",
    )  # fmt: skip
    args = p.parse_args(["--model", "tiny:0.1M", "--out", "o", "--data", "d", "--backend", "tiny", "--no-memo"])
    cfg = cli_eval.eval_config(args, args.model, args.out_dir, None)
    assert (cfg.extraction, cfg.memo_dir, cfg.backend_kwargs, cfg.progress) == ("tiny", None, {}, True)
    args = p.parse_args(["--model", "m", "--out", "o", "--data", "d", "--threads", "0"])
    assert cli_eval.eval_config(args, "m", Path("o"), None).backend_kwargs == {
        "batch_size": 8, "device": "cpu", "dtype": "float32", "threads": 0,
    }  # fmt: skip


# -- loss_params -------------------------------------------------------------------------------------------


def _objective(batch, tau: float = 0.04, clip_c: float | None = None, level: Literal["token", "sequence"] = "token"):
    return batch


def test_coerce_kwargs_converts_losslessly_and_names_the_key():
    assert coerce_kwargs(_objective, {"tau": 1, "clip_c": None}, "loss_params") == {"tau": 1.0, "clip_c": None}
    assert coerce_kwargs(_objective, {"tau": "1e-3"}, "loss_params") == {"tau": 0.001}  # YAML 1.1 reads 1e-3 as a str
    with pytest.raises(ConfigError) as e:
        coerce_kwargs(_objective, {"tau": "abc"}, "loss_params")
    assert (
        str(e.value)
        == "loss_params.tau: expected float, got 'abc'; write a number, e.g. loss_params.tau: 0.04 (its default)"
    )
    with pytest.raises(
        ConfigError, match="loss_params.clip_c: expected float, got True; write a number or null, e.g. .*: null"
    ):
        coerce_kwargs(_objective, {"clip_c": True}, "loss_params")
    with pytest.raises(ConfigError, match="loss_params.level: expected one of 'token', 'sequence', got 'seq'"):
        coerce_kwargs(_objective, {"level": "seq"}, "loss_params")
    with pytest.raises(ConfigError, match="loss_params.nope: unknown parameter; _objective accepts tau, clip_c, level"):
        coerce_kwargs(_objective, {"nope": 1}, "loss_params")


def test_train_config_checks_loss_params_through_the_loss_signature():
    from m2po.engine.train_config import TrainConfig

    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, overrides=["algo.loss=m2po", "algo.loss_params={tau: abc}"])
    assert e.value.key == "algo.loss_params.tau" and "expected float, got 'abc'" in str(e.value)
    assert "0.04" in str(e.value)  # the default, as an example of what to write
    with pytest.raises(ConfigError, match="algo.loss_params.ratio_level: expected str, got 5"):
        load_config(TrainConfig, overrides=["algo.loss=topr", "algo.loss_params={ratio_level: 5}"])
    cfg = load_config(TrainConfig, overrides=["algo.loss=grpo", "algo.loss_params={clip_low: 1, clip_high: 2e-1}"])
    assert cfg.algo.loss_params == {"clip_low": 1.0, "clip_high": 0.2}
    assert all(type(v) is float for v in cfg.algo.loss_params.values())
