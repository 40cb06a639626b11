"""Tests for ``m2po.config``: typed loading, overrides, errors that say how to fix, round trips."""

from __future__ import annotations

import dataclasses
import enum
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml

from m2po.config import ConfigError, config_help, dump_yaml, load_config, option, to_dict, validate_config


class Device(enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


@dataclass
class Optim:
    """Optimizer settings."""

    lr: float = option(1e-6, "Adam learning rate (paper App. B).")
    betas: tuple[float, float] = option((0.9, 0.999), "Adam betas.")

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}", hint="e.g. lr=1e-6")


@dataclass
class Train:
    """Training loop."""

    staleness: int = option(0, "Staleness s in optimizer updates; a multiple of updates_per_batch.")
    updates_per_batch: int = option(4, "Mini-batches (optimizer updates) per rollout batch.")
    loss: Literal["m2po", "grpo", "gspo"] = option("m2po", "Policy loss, by registry name.")
    tau: float | None = option(None, "M2 threshold; None uses the loss's default.")
    seeds: list[int] = option([0], "Seeds to run.")
    optim: Optim = option(Optim, "Optimizer.")
    use_kl: bool = option(False, "Add a KL penalty.")

    def validate(self) -> None:
        if self.staleness % self.updates_per_batch:
            raise ConfigError("staleness", "must be a multiple of updates_per_batch", hint="use 32 or 36")


@dataclass
class Root:
    """A run."""

    name: str = option("tiny", "Run name.")
    out_dir: Path = option(Path("results"), "Where run directories go.")
    device: Device = option(Device.CPU, "Device.")
    train: Train = option(Train(), "Training settings.")
    extra: dict[str, float] = option({}, "Free-form numbers.")
    eval_every: int | None = option(None, "Evaluate every N updates.")


@dataclass
class WithRequired:
    model: str = option(help="HF model id.")
    n: int = option(1, "A count.")


@dataclass
class BadPost:
    k: int = option(1, "Must be positive.")

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError("k must be >= 0")


@dataclass
class Outer:
    inner: BadPost = option(BadPost, "Nested.")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_no_shared_mutables() -> None:
    a, b = load_config(Root), load_config(Root)
    assert a == Root() and a.train.seeds == [0] and a.train.optim.lr == 1e-6
    a.train.seeds.append(1)
    a.extra["x"] = 1.0
    assert b.train.seeds == [0] and b.extra == {} and Root().train.seeds == [0]


def test_nested_load(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "name: run1\nout_dir: /tmp/r\ndevice: cuda\n"
        "train:\n  staleness: 32\n  loss: gspo\n  tau: 0.04\n  seeds: [1, 2]\n"
        "  optim:\n    lr: 1e-6\n    betas: [0.8, 0.9]\n"
        "extra: {a: 1}\n",
    )
    cfg = load_config(Root, p)
    assert cfg.name == "run1" and cfg.out_dir == Path("/tmp/r") and cfg.device is Device.CUDA
    t = cfg.train
    assert (t.staleness, t.loss, t.tau, t.seeds, t.updates_per_batch) == (32, "gspo", 0.04, [1, 2], 4)
    assert t.optim.lr == 1e-6 and isinstance(t.optim.lr, float)  # '1e-6' is a str to PyYAML
    assert t.optim.betas == (0.8, 0.9)
    assert cfg.extra == {"a": 1.0} and isinstance(cfg.extra["a"], float)


def test_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  staleness: 32\n")
    cfg = load_config(
        Root,
        p,
        [
            "train.staleness=256",
            "train.optim.lr=0.5",
            "train.use_kl=true",
            "train.seeds=[1,2,3]",
            "train.tau=null",
            "eval_every=3",
            "name=x=y",
            "train.optim={betas: [0.1, 0.2]}",
        ],
    )
    assert cfg.train.staleness == 256 and cfg.train.use_kl is True and cfg.train.seeds == [1, 2, 3]
    assert cfg.train.tau is None and cfg.eval_every == 3 and cfg.name == "x=y"
    # a mapping override merges into the section rather than replacing it
    assert cfg.train.optim.lr == 0.5 and cfg.train.optim.betas == (0.1, 0.2)
    # data= is merged over the file, overrides over both
    cfg = load_config(Root, p, ["train.loss=grpo"], data={"train": {"updates_per_batch": 8}})
    assert (cfg.train.staleness, cfg.train.updates_per_batch, cfg.train.loss) == (32, 8, "grpo")


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  stalenes: 32\n")
    with pytest.raises(ConfigError) as ei:
        load_config(Root, p)
    e = ei.value
    assert e.key == "train.stalenes" and e.source == str(p)
    msg = str(e)
    assert msg.startswith("train.stalenes: unknown key") and str(p) in msg
    assert "did you mean 'train.staleness'?" in msg
    assert "updates_per_batch" in msg and "optim" in msg  # lists the valid keys

    with pytest.raises(ConfigError, match=r"trian: unknown key \(from --set trian.lr=1\).*did you mean 'train'"):
        load_config(Root, overrides=["trian.lr=1"])
    with pytest.raises(ConfigError, match="valid keys at the top level"):
        load_config(Root, data={"zzz": 1})


def test_wrong_type(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  optim:\n    lr: abc\n")
    with pytest.raises(ConfigError) as ei:
        load_config(Root, p)
    assert str(ei.value) == f"train.optim.lr: expected float, got 'abc' (from {p})"
    assert ei.value.key == "train.optim.lr"
    again = pickle.loads(pickle.dumps(ei.value))
    assert (str(again), again.key, again.source) == (str(ei.value), ei.value.key, str(p))

    bad = [
        ("train.staleness=2.5", "train.staleness: expected int, got 2.5"),
        ("train.staleness=true", "train.staleness: expected int, got True"),
        ("train.use_kl=1", "train.use_kl: expected bool, got 1"),
        ("name=7", "name: expected str, got 7"),
        ("train.seeds=3", r"train.seeds: expected list\[int\], got 3"),
        ("train.seeds=[1, x]", r"train.seeds\[1\]: expected int, got 'x'"),
        ("train.tau=abc", "train.tau: expected float, got 'abc'"),
        ("train.optim.betas=[1]", "give exactly 2 items"),
        ("train=5", "train: expected a mapping of Train fields"),
        ("device=tpu", "device: expected one of 'cpu', 'cuda'"),
    ]
    for override, match in bad:
        with pytest.raises(ConfigError, match=match) as ei:
            load_config(Root, overrides=[override])
        assert f"(from --set {override})" in str(ei.value)


def test_literal_choices() -> None:
    assert load_config(Root, overrides=["train.loss=grpo"]).train.loss == "grpo"
    with pytest.raises(ConfigError) as ei:
        load_config(Root, overrides=["train.loss=m2p"])
    msg = str(ei.value)
    assert msg.startswith("train.loss: expected one of 'm2po', 'grpo', 'gspo', got 'm2p'")
    assert "did you mean 'm2po'?" in msg


def test_validate_hook_dotted_key(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  staleness: 33\n")
    with pytest.raises(ConfigError) as ei:
        load_config(Root, p)
    assert ei.value.key == "train.staleness"
    assert str(ei.value) == f"train.staleness: must be a multiple of updates_per_batch (from {p}); use 32 or 36"
    with pytest.raises(ConfigError, match=r"^train.optim.lr: must be > 0, got -1.0 \(from --set train.optim.lr=-1\)"):
        load_config(Root, overrides=["train.optim.lr=-1"])
    # programmatic configs are validated the same way
    with pytest.raises(ConfigError, match="^train.staleness"):
        validate_config(Root(train=Train(staleness=3)))
    # a plain ValueError (here from __post_init__) is keyed by the dataclass's own path
    with pytest.raises(ConfigError, match="^inner: k must be >= 0"):
        load_config(Outer, data={"inner": {"k": -1}})


def test_required_and_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="model: is required.*--set model=VALUE"):
        load_config(WithRequired)
    assert load_config(WithRequired, overrides=["model=gpt2"]).model == "gpt2"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(Root, overrides=["train.staleness"])
    with pytest.raises(ConfigError, match=r"^name.x: 'name' is a str value, not a section \(from --set name.x=1\)"):
        load_config(Root, overrides=["name.x=1"])
    assert load_config(Root, overrides=["extra.x=1"]).extra == {"x": 1.0}  # a dict field takes sub-keys


def test_bad_files(tmp_path: Path) -> None:
    assert load_config(Root, write(tmp_path, "")) == Root()  # an empty file is all defaults
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Root, write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Root, write(tmp_path, "a: [1\n"))


def test_round_trip_dump_load(tmp_path: Path) -> None:
    cfg = load_config(
        Root,
        overrides=[
            "train.staleness=256",
            "train.optim.lr=3e-6",
            "train.tau=0.04",
            "train.seeds=[3,4]",
            "device=cuda",
            "extra={x: 0.5}",
            "eval_every=10",
        ],
    )
    out = tmp_path / "run" / "config.yaml"
    dump_yaml(cfg, out)
    assert load_config(Root, out) == cfg
    assert load_config(Root, data=to_dict(cfg)) == cfg
    plain = yaml.safe_load(out.read_text())
    assert plain["device"] == "cuda" and plain["train"]["optim"]["betas"] == [0.9, 0.999]
    assert list(plain) == [f.name for f in dataclasses.fields(Root)]  # field order kept
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temp file left


def test_config_help() -> None:
    text = config_help(Root)
    assert text.splitlines()[0] == "A run."
    assert "train.optim.lr: float = 1.0e-06" in text
    assert "Adam learning rate (paper App. B)." in text
    assert "train.loss: 'm2po' | 'grpo' | 'gspo' = m2po" in text
    assert "train.tau: float | None = null" in text
    assert "train.seeds: list[int] = [0]" in text
    assert "[train]  Training settings." in text
    assert "model: str (required)" in config_help(WithRequired)
    # every leaf key is documented
    for key in ("name", "out_dir", "device", "train.staleness", "train.optim.betas", "extra", "eval_every"):
        assert f"\n{key}: " in "\n" + text
