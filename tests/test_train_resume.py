"""``m2po train`` as a user drives it: config errors caught before a run folder exists, Ctrl-C and
SIGTERM that stop cleanly and resume byte for byte, resumes that refuse to continue something else
(no run, no or a corrupt checkpoint, another config) and restore logs that were cut, extending a
finished run, and the feedback a run prints (warm start, progress lines, summary)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox import last_error_line, m2po, mount_tmpfs, run_script

FAST = [
    "warm_start.steps=400",
    "rollout.prompts_per_batch=8",
    "rollout.group_size=4",
    "rollout.max_new_tokens=4",
    "run.eval_problems=32",
    "run.progress=true",
    "run.queue_in_memory=1",
]
#: the reference run: 96 updates at s = 16 (4 rollout batches wait in the queue, 3 of them spilled)
OPTS = [
    "algo.loss=m2po",
    "algo.staleness=16",
    "run.total_updates=96",
    "run.eval_every=16",
    "run.checkpoint_every=8",
    "run.log_every=16",
    "optim.lr=3e-3",
]
LOGS = ("updates.csv", "evals.csv", "tokens.csv")
_CACHE = ""


def train(out: Path, overrides: list[str], *extra: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "m2po.cli", "train", "--out", str(out)]
    for o in [*FAST, f"warm_start.cache_dir={_CACHE}", *overrides]:
        cmd += ["--set", o]
    cmd += list(extra)
    if popen:
        return subprocess.Popen(cmd, text=True, **popen)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def logs(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in LOGS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One warm start shared by the module, and one finished reference run."""
    global _CACHE
    _CACHE = str(tmp_path_factory.mktemp("warm"))
    run = tmp_path_factory.mktemp("ref") / "ref"
    res = train(run, OPTS)
    assert res.returncode == 0, res.stderr
    return run, res


def copy_run(reference, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(reference[0], dst)
    return dst


# -- feedback -----------------------------------------------------------------------------------------------


def test_warm_start_announces_itself_with_an_absolute_cache_path(reference):
    err = reference[1].stderr
    assert re.search(r"warm start: training the supervised warm start of the 0\.1M model \(400 SFT steps, about ", err)
    assert f"into {Path(_CACHE).resolve()}/sft-0.1M-" in err
    assert "warm start: SFT step 400/400" in err  # a line per tenth without a terminal


def test_relative_cache_dir_is_recorded_absolute(reference, tmp_path):
    rel = os.path.relpath(_CACHE, tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "m2po.cli", "train", "--warm-start-only", "--set", "warm_start.steps=400"]
        + ["--set", f"warm_start.cache_dir={rel}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert f"warm start ready: {Path(_CACHE).resolve()}/sft-0.1M-" in res.stdout
    assert "training the supervised" not in res.stderr  # found, not trained again


def test_default_cache_dir_is_not_relative_to_the_current_directory(monkeypatch, tmp_path):
    from m2po.engine.train_config import WarmStartSection

    monkeypatch.delenv("M2PO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path / ".." if (tmp_path / "..").exists() else tmp_path)
    assert WarmStartSection().resolved_cache_dir() == (tmp_path / "xdg" / "m2po").resolve()
    monkeypatch.setenv("M2PO_CACHE_DIR", str(tmp_path / "mine"))
    assert WarmStartSection().resolved_cache_dir() == (tmp_path / "mine").resolve()


def test_progress_lines_without_a_terminal_and_the_end_of_run_summary(reference):
    run, res = reference
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{run.name}: update ")]
    assert [int(re.search(r"update (\d+)/96", ln).group(1)) for ln in lines] == [16, 32, 48, 64, 80, 96]
    for ln in lines:
        assert re.search(r"reward=\d\.\d{3} s=\d+ clip=\d\.\d{3} acc=(\d\.\d{3}|-)", ln), ln
    assert re.search(r"s=1[6-9]", lines[-1])  # the data of s = 16 is 16..19 updates old
    out = res.stdout
    assert "run complete:" in out and re.search(r"peak \d+\.\d% at update \d+, final \d+\.\d% at update 96", out)
    assert f"m2po train --out {run} --resume --set run.total_updates=192" in out
    assert "wall time" in out


# -- Ctrl-C and SIGTERM ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly_and_resume_is_byte_identical(reference, tmp_path, sig, code):
    run = tmp_path / "run"
    proc = train(run, OPTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    spill = run / "queue_spill"
    deadline = time.time() + 300
    while time.time() < deadline:
        log = run / "updates.csv"
        if (run / "checkpoints" / "last.pt").exists() and log.exists() and log.read_text().count("\n") - 1 >= 24:
            break
        time.sleep(0.005)
    assert any(spill.glob("stale-queue-*/*.pt")), "the queue must have spilled for this test to mean anything"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(
        rf"m2po train: interrupted at update (\d+); resume with `m2po train --out {re.escape(str(run))} --resume` "
        r"\(it continues from the checkpoint at update (\d+)\)",
        last,
    )
    assert m, last
    assert 24 <= int(m.group(1)) < 96 and int(m.group(2)) % 8 == 0
    assert "Traceback" not in err
    assert not spill.exists()
    assert not list(run.rglob("*.tmp")), "nothing half-written"
    res = train(run, OPTS, "--resume")
    assert res.returncode == 0, res.stderr
    assert logs(run) == logs(reference[0])


# -- resume refuses what it cannot continue exactly -----------------------------------------------------------


def test_resume_of_a_folder_that_holds_no_run_is_an_error(tmp_path):
    res = train(tmp_path / "typo", ["run.total_updates=4"], "--resume")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"m2po train: error: nothing to resume: no run here, {tmp_path / 'typo'}, check --out, or drop --resume to "
        "start a new run (`--resume auto` starts one when there is none)"
    )
    assert not (tmp_path / "typo").exists()


def test_resume_without_the_checkpoint_is_an_error_and_keeps_the_logs(reference, tmp_path):
    run = copy_run(reference, tmp_path)
    (run / "checkpoints" / "last.pt").unlink()
    before = logs(run)
    res = train(run, OPTS, "--resume")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.startswith("m2po train: error: the checkpoint is missing although updates.csv has 96 updates")
    assert str(run / "checkpoints" / "last.pt") in line and "Traceback" not in res.stderr
    assert logs(run) == before


@pytest.mark.parametrize("damage", ["truncate", "head", "garbage"])
def test_a_corrupt_checkpoint_is_one_line(reference, tmp_path, damage):
    run = copy_run(reference, tmp_path)
    ckpt = run / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "head": data[:5000], "garbage": b"not a checkpoint" * 10}
    ckpt.write_bytes(damaged[damage])
    before = logs(run)
    res = train(run, OPTS, "--resume")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert re.fullmatch(r"m2po train: error: the checkpoint is corrupt or truncated \(.+\), .+last\.pt, .+", line)
    assert logs(run) == before


def test_resume_with_another_config_names_the_keys(reference, tmp_path):
    run = copy_run(reference, tmp_path)
    res = train(run, [*OPTS, "optim.lr=1e-3", "run.seed=3"], "--resume")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "optim.lr: 0.003 -> 0.001" in line and "run.seed: 0 -> 3" in line and str(run / "config.yaml") in line


def test_resume_of_a_finished_run_says_it_is_complete_and_allows_cosmetic_keys(reference, tmp_path):
    run = copy_run(reference, tmp_path)
    before = logs(run)
    res = train(run, [*OPTS, "run.progress=false", "run.eval_every=8", "run.checkpoint_every=16"], "--resume")
    assert res.returncode == 0, res.stderr
    assert f"{run} is complete (96 of 96 updates)" in res.stdout
    assert "run.total_updates=192" in res.stdout
    assert logs(run) == before


@pytest.mark.parametrize("cut", ["rows", "half_row"])
def test_resume_restores_a_log_cut_after_the_last_checkpoint(reference, tmp_path, cut):
    """updates.csv of a finished run cut to 30 of 96 rows, or its last row cut in half: resume says the run
    is complete and puts back the exact rows the checkpoint holds."""
    run = copy_run(reference, tmp_path)
    log = run / "updates.csv"
    data = log.read_bytes()
    log.write_bytes(b"".join(data.splitlines(keepends=True)[:31]) if cut == "rows" else data[:-7])
    res = train(run, OPTS, "--resume")
    assert res.returncode == 0, res.stderr
    assert "restored updates.csv from the checkpoint" in res.stderr
    assert f"{run} is complete" in res.stdout
    assert logs(run) == logs(reference[0])


def test_a_cut_log_is_restored_and_raising_total_updates_extends_the_run(reference, tmp_path):
    """A 48-update run, its updates.csv then cut to 30 rows and its last evals row cut in half, extended
    to 96 updates: the logs equal the reference run's, which made 96 updates in one go."""
    run = tmp_path / "run"
    short = [o for o in OPTS if not o.startswith("run.total_updates")] + ["run.total_updates=48"]
    assert train(run, short).returncode == 0
    rows = (run / "updates.csv").read_text().splitlines(keepends=True)
    (run / "updates.csv").write_text("".join(rows[:31]))
    evals = (run / "evals.csv").read_bytes()
    (run / "evals.csv").write_bytes(evals[:-10])
    res = train(run, OPTS, "--resume")
    assert res.returncode == 0, res.stderr
    assert "restored updates.csv from the checkpoint (30 rows on disk, 48 expected)" in res.stderr
    assert "restored evals.csv from the checkpoint" in res.stderr
    assert "extending" in res.stderr and "from 48 to 96 updates" in res.stderr
    assert logs(run) == logs(reference[0])
    assert "total_updates: 96" in (run / "config.yaml").read_text()


def test_resume_auto_starts_a_run_when_there_is_none(reference, tmp_path):
    opts = ["run.total_updates=4", "run.eval_every=4", "run.checkpoint_every=4"]
    first = train(tmp_path / "r", opts, "--resume", "auto")
    assert first.returncode == 0, first.stderr
    again = train(tmp_path / "r", opts, "--resume", "auto")
    assert again.returncode == 0 and "is complete" in again.stdout


# -- errors found at config time: nothing is created -----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("run.eval_every=0", "run.eval_every"),
        ("run.threads=0", "run.threads"),
        ("algo.loss_params={tau: -1}", "`tau` must be a number >= 0"),
        ("task.n_test=0", "task.n_test"),
        ("task.n_train=9900", "exceeds the 10000 distinct questions"),
        ("task.dataset=/nope.parquet", "task.dataset"),
        ("optim.lr", "e.g. --set optim.lr=0.0002"),
        ("algo.loss_params={keep_mask: 1}", "it accepts ['tau']"),
    ],
)
def test_config_errors_are_one_line_and_create_no_run_folder(tmp_path, override, needle):
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "m2po.cli", "train", "--out", str(out), "--set", override],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m2po train: error: "), res.stderr
    assert needle in lines[0]
    assert not out.exists()


def test_a_dataset_with_the_tiny_model_is_refused_not_ignored(tmp_path):
    from m2po.config import ConfigError, load_config
    from m2po.engine.train_config import TrainConfig

    parquet = tmp_path / "train.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match="tiny model trains on the arithmetic task only") as e:
        load_config(TrainConfig, None, [f"task.dataset={parquet}"])
    assert e.value.key == "task.dataset"


def test_loss_parameters_a_config_may_set_exclude_the_loops_tensors():
    from m2po.losses import loss_info

    def config_params(name: str) -> frozenset[str]:
        return loss_info(name).config_params

    assert config_params("m2po") == {"tau"}
    assert "proximal_log_prob" not in config_params("decoupled_ppo")
    assert config_params("grpo") == {"clip_low", "clip_high", "clip_c"}


# -- a full disk and a read-only folder (real ENOSPC / EROFS: tests/sandbox.py) ---------------------------------


def _train_cmd(out: Path, *extra: str) -> str:
    args = ["train", "--out", out]
    for o in [*FAST, f"warm_start.cache_dir={_CACHE}", *OPTS]:
        args += ["--set", o]
    return m2po(*args, *extra)


def test_disk_full_is_one_line_and_resume_after_freeing_space_is_byte_identical(reference, tmp_path):
    """The run folder on a 2.5 MB tmpfs: the second checkpoint (1.3 MB, written beside the first) does not
    fit. After the tmpfs is enlarged, --resume finishes the run with the reference run's logs."""
    mnt, run = tmp_path / "mnt", tmp_path / "mnt" / "run"
    script = (
        mount_tmpfs(mnt, size_kb=2500)
        + f"{_train_cmd(run)} > /dev/null 2> {tmp_path / 'err1'}; echo rc1=$?\n"
        + f"mount -o remount,size=64m {mnt}\n"
        + f"{_train_cmd(run, '--resume')} > /dev/null 2> {tmp_path / 'err2'}; echo rc2=$?\n"
        + f"ls -a {run}; cp {run}/*.csv {tmp_path}/\n"
    )
    res = run_script(script)
    err1 = (tmp_path / "err1").read_text()
    assert "rc1=2" in res.stdout and "rc2=0" in res.stdout, res.stdout + err1
    line = last_error_line(err1, "train")
    assert line == (
        f"m2po train: error: no space left on device, {run / 'checkpoints' / 'last.pt'}, free some space, "
        f"then resume with `m2po train --out {run} --resume`"
    )
    assert "queue_spill" not in res.stdout.split()
    assert logs(tmp_path) == logs(reference[0])


def test_read_only_run_folder_and_cache_are_one_line_before_any_work(reference, tmp_path):
    mnt = tmp_path / "mnt"
    res = run_script(mount_tmpfs(mnt, read_only=True) + f"{_train_cmd(mnt / 'run')}; echo rc=$?\n")
    assert "rc=2" in res.stdout
    line = last_error_line(res.stderr, "train")
    assert line.startswith(f"m2po train: error: cannot write (read-only file system), {mnt / 'run'}, make ")
    cache = tmp_path / "cache"
    cmd = _train_cmd(tmp_path / "run2").replace(f"warm_start.cache_dir={_CACHE}", f"warm_start.cache_dir={cache}")
    res = run_script(mount_tmpfs(cache, read_only=True) + f"{cmd}; echo rc=$?\n")
    assert "rc=2" in res.stdout
    assert "read-only file system" in last_error_line(res.stderr, "train") and str(cache) in res.stderr
    assert not (tmp_path / "run2").exists()


def test_on_a_terminal_the_bar_shows_reward_staleness_clipping_and_accuracy():
    import io

    from m2po.engine.progress import TrainProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    bar = TrainProgress(8, 0, "run", enabled=True, stream=term)
    row = {"reward_mean": 0.25, "staleness": 16, "clipped_frac": 0.125}
    bar.step(4, row, None)
    bar.step(8, row, {"sampled_acc": 0.5})
    bar.close()
    shown = term.getvalue()
    assert "8/8" in shown and "reward=0.250" in shown and "s=16" in shown and "clip=0.125" in shown
    assert "acc=0.500" in shown
