"""The Snakemake pipeline: the paper profile's dry run lists the full grid, and a miniature
tiny study runs end to end (data -> grid -> figures -> report) with every output non-empty."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from m2po.analysis.figure_list import FIGURES as FIGURE_LIST
from m2po.analysis.figure_list import PLOTS
from m2po.pipeline import RunSpec, expand_grid, parse_run_id, plan_shards

ROOT = Path(__file__).resolve().parents[1]
FIGURES = [f.id for f in PLOTS]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _snakemake(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env())


def _job_counts(stdout: str) -> dict[str, int]:
    """Parse snakemake's "Job stats" table of a dry run."""
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if m:
            counts[m[1]] = int(m[2])
    return counts


def test_run_ids_round_trip():
    for spec in [RunSpec("Qwen2.5-Math-7B", "m2po_released", 256, 1, 0.08), RunSpec("0.1M", "grpo_notr", 0, 3)]:
        assert parse_run_id(spec.run_id) == spec
    assert parse_run_id("Llama-3.2-3B-Instruct-decoupled_ppo-s256-seed0").method == "decoupled_ppo"
    with pytest.raises(ValueError):
        parse_run_id("0.1M-ppo-s4-seed0")


@pytest.fixture(scope="module")
def paper_dry_run() -> str:
    """``snakemake -n -p`` of the paper profile: the job stats table, then one block per job."""
    res = _snakemake("-n", "-p", "--profile", "workflow/profiles/paper")
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def _jobs(stdout: str, rule: str) -> list[str]:
    """The dry run's blocks of ``rule`` (``rule X:`` or ``localrule X:``)."""
    return [b for b in re.split(r"\n(?=(?:local)?rule )", stdout) if re.match(rf"(?:local)?rule {rule}:", b)]


def test_paper_profile_dry_run_lists_the_full_grid(paper_dry_run):
    counts = _job_counts(paper_dry_run)
    ids = {re.search(r"run_id=([^,\s]+)", b)[1] for b in _jobs(paper_dry_run, "train")}
    # the paper's grid, counted by hand from workflow/config/paper.yaml: six models x (GRPO, no-TR, M2PO, GSPO
    # at s=256 + GRPO s=0) = 30; Qwen2.5-Math-7B's staleness sweep adds GRPO s=32/64/128 and M2PO
    # s=0/32/64/128 = 7; Llama-3B's baselines CISPO/AReaL/TOPR/GPPO s=256 = 4; the tau sweep 5 x 2 models = 10
    assert counts.get("train") == len(ids) == 30 + 7 + 4 + 10
    models = ["Qwen2.5-Math-7B", "Llama-3.2-3B-Instruct", "Qwen3-1.7B-Base", "Qwen3-4B-Base", "Qwen3-8B-Base"]
    for model in [*models, "Qwen2.5-32B"]:
        assert f"{model}-grpo-s0-seed0" in ids
        for method in ("grpo", "grpo_notr", "m2po", "gspo"):
            assert f"{model}-{method}-s256-seed0" in ids
    for s in (0, 32, 64, 128, 256):  # Fig. 2 / Fig. 11 staleness sweep
        assert f"Qwen2.5-Math-7B-grpo-s{s}-seed0" in ids and f"Qwen2.5-Math-7B-m2po-s{s}-seed0" in ids
    for method in ("cispo", "decoupled_ppo", "topr", "gppo"):  # Fig. 6 baselines
        assert f"Llama-3.2-3B-Instruct-{method}-s256-seed0" in ids
    for tau in ("0", "0.02", "0.08", "0.12", "0.16"):  # Fig. 8 tau sweep
        assert f"Qwen2.5-Math-7B-m2po-s256-seed0-tau{tau}" in ids and f"Qwen3-1.7B-Base-m2po-s256-seed0-tau{tau}" in ids
    assert counts.get("report") == 1 and counts.get("data") == 1 and counts.get("figures") == 1

    # the evaluation stage: one GPU job per saved checkpoint (every 50 steps of 1000 + s/4, and the last)
    # of every run, and one job per run gathering them into benchmarks.csv
    def checkpoints(s: int) -> int:
        total = 1000 + s // 4
        return total // 50 + (total % 50 > 0)

    assert counts.get("eval") == sum(checkpoints(parse_run_id(i).staleness) for i in ids)
    assert counts.get("benchmarks") == len(ids)


def test_paper_eval_jobs_get_gpus_and_every_checkpoint_of_a_run(paper_dry_run):
    steps: dict[str, list[int]] = {}
    for block in _jobs(paper_dry_run, "eval"):
        wildcards = dict(re.findall(r"(run_id|step)=([^,\s]+)", block))
        steps.setdefault(wildcards["run_id"], []).append(int(wildcards["step"]))
        gpus = int(re.search(r"gpus=(\d+)", block)[1])
        assert gpus == (4 if wildcards["run_id"].startswith("Qwen2.5-32B") else 1), block
        shell = block[block.index("Shell command: ") :].splitlines()[0]
        assert f"eval-run --run results/paper/runs/{wildcards['run_id']} --step {wildcards['step']}" in shell
        assert f"--backend vllm --data results/paper/data --tensor-parallel-size {gpus}" in shell
        assert "--benchmarks paper" in shell and "--top-p 1.0" in shell  # the paper's eight, its sampling
        if "Math-7B" in wildcards["run_id"]:  # its 4k context: prompt 1536 + response 2560
            assert "--max-new-tokens 2560 --max-model-len 4096" in shell
    assert sorted(steps["Qwen2.5-Math-7B-m2po-s256-seed0"]) == [*range(50, 1051, 50), 1064]
    assert sorted(steps["Qwen2.5-Math-7B-grpo-s0-seed0"]) == list(range(50, 1001, 50))
    slurm = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert slurm["set-resources"]["eval"]["cpus_per_task"] >= 1  # the eval rule's own gpus are kept
    assert "gpus" not in slurm["set-resources"]["eval"]


def test_tiny_profile_evaluates_each_training_shard_in_one_job_and_draws_every_figure_in_one(tmp_path):
    """The tiny study's dry run: one eval job per training shard, whose --run list is exactly the shard's runs
    and whose outputs are their benchmarks.csv; one figures job whose outputs are every file of the figure list."""
    res = _snakemake("-n", "-p", "--profile", "workflow/profiles/tiny", "--config", f"results={tmp_path}/r")
    assert res.returncode == 0, res.stderr + res.stdout
    config = yaml.safe_load((ROOT / "workflow/config/tiny.yaml").read_text())
    shards = plan_shards(config, expand_grid(config))
    counts = _job_counts(res.stdout)
    assert counts.get("figures") == 1 and not any(name.startswith("figure_") for name in counts)
    seen = []
    for shard in shards:
        (block,) = _jobs(res.stdout, f"eval_{shard.name}")
        runs = re.search(r"eval-run --run (.*?) --backend tiny", block)[1].split()
        assert runs == [f"{tmp_path}/r/runs/{r.run_id}" for r in shard.runs]
        outputs = re.search(r"output: (.*)\n", block)[1].split(", ")
        assert sorted(outputs) == sorted(f"{run}/benchmarks.csv" for run in runs)
        # independent of the planner: the same runs, in the same order, as its training job writes, and the
        # training job's priority
        (train,) = _jobs(res.stdout, f"train_{shard.name}")
        trained = re.search(r"output: (.*)\n", train)[1].split(", ")
        assert runs == list(dict.fromkeys(str(Path(out).parent) for out in trained))
        assert re.search(r"priority: (\d+)", block)[1] == re.search(r"priority: (\d+)", train)[1]
        seen += runs
    assert len(seen) == len(set(seen)) == len(expand_grid(config))  # every run evaluated, once
    (block,) = _jobs(res.stdout, "figures")
    outputs = re.search(r"output: (.*)\n", block)[1].split(", ")
    expected = [out for fig in FIGURE_LIST for out in fig.outputs(f"{tmp_path}/r/figures")]
    assert sorted(outputs) == sorted(expected)
    plots = "fig1 fig2 fig3 fig4a fig4b fig5 fig6 fig7a fig7b fig8 fig9a fig9b fig11".split()  # the paper's, by hand
    by_hand = [f"{p}.{ext}" for p in plots for ext in ("png", "pdf")] + ["table1.csv", "table1.md"]
    assert sorted(Path(out).name for out in outputs) == sorted(by_hand)


def test_data_rule_declares_its_real_input_and_the_manifests_it_writes(paper_dry_run):
    (block,) = _jobs(paper_dry_run, "data")
    assert re.search(r"input: data/sources\.yaml\n", block), block
    names = ["deepscaler", "math500", "aime2024", "aime2025", "amc23", "amc24", "minerva_math", "olympiadbench"]
    outputs = re.search(r"output: (.*)\n", block)[1].split(", ")
    assert sorted(outputs) == sorted(f"results/paper/data/{n}/manifest.json" for n in [*names, "gaokao2023en"])


def _rules(configfile: str) -> dict[str, dict]:
    """Every rule of the workflow parsed with ``configfile``: whether it is local (never submitted to a
    cluster) and its conda environment, read from Snakemake's own workflow object."""
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings\n"
        "with SnakemakeApi(OutputSettings()) as api:\n"
        "    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path('Snakefile'),\n"
        f"        config_settings=ConfigSettings(configfiles=[Path({configfile!r})]))._workflow\n"
        "    print(json.dumps({r.name: {'local': r.name in wf._localrules or r.norun, 'conda': r.conda_env,\n"
        "                                'basedir': str(r.basedir)} for r in wf.rules}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


@pytest.mark.parametrize("profile", ["paper", "tiny"])
def test_rules_name_their_environment_and_only_heavy_jobs_may_go_to_a_cluster(profile):
    """``snakemake --use-conda``: every rule that runs code names an environment of workflow/envs/ (the verl
    stack for the paper's training and evaluation jobs); the slurm profile submits only those jobs (its
    default resources ask for a GPU node): data, figures, report and the gathering of evaluations are local."""
    rules = _rules(f"workflow/config/{profile}.yaml")
    envs = {name: Path(r["basedir"], r["conda"]).resolve() for name, r in rules.items() if r["conda"]}
    assert set(envs) == set(rules) - {"all"}  # `all` only collects the report
    assert all(env.parent == ROOT / "workflow" / "envs" and env.is_file() for env in envs.values())
    heavy = (
        {"train", "eval"}
        if profile == "paper"
        else {n for n in rules if n.startswith("train_")} | {n for n in rules if n.startswith("eval_")} | {"warm_start"}
    )
    assert {n for n, r in rules.items() if not r["local"]} == heavy
    gpu = {n for n, env in envs.items() if env.name == "m2po-gpu.yaml"}
    assert gpu == (heavy if profile == "paper" else set())
    assert {"figures", "data", "report", "all"} <= {n for n, r in rules.items() if r["local"]}


def test_the_cpu_environment_installs_this_repository_with_the_cpu_torch():
    cpu = yaml.safe_load((ROOT / "workflow/envs/m2po-cpu.yaml").read_text())
    pip = next(d["pip"] for d in cpu["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0" in pip and any("whl/cpu" in p for p in pip)
    # Snakemake copies the env file under its conda prefix before conda reads it: no repository path there
    assert not any(".." in p or p.startswith(("-e", "-c", "-r")) for p in pip)
    # the repository is installed by the post-deploy script, run from the workflow's working directory (the root)
    post = (ROOT / "workflow/envs/m2po-cpu.post-deploy.sh").read_text().splitlines()
    install = [ln for ln in post if ln.startswith("pip install")]
    assert install and "-c constraints-cpu.txt" in install[0] and '-e ".[pipeline]"' in install[0]
    assert (ROOT / "constraints-cpu.txt").is_file() and (ROOT / "pyproject.toml").is_file()


@pytest.mark.slow
def test_miniature_tiny_pipeline_end_to_end(tmp_path):
    results = tmp_path / "mini"
    res = _snakemake(
        "--configfile",
        "workflow/config/mini.yaml",
        "--config",
        f"results={results}",
        "--cores",
        "2",
        "--rerun-incomplete",
        "--show-failed-logs",
        timeout=1500,
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    for fig in FIGURES:
        for ext in ("png", "pdf"):
            path = results / "figures" / f"{fig}.{ext}"
            assert path.exists() and path.stat().st_size > 0, path
    for name in ("figures/table1.csv", "figures/table1.md", "report.md", "report.html"):
        assert (results / name).stat().st_size > 0, name
    report = (results / "report.md").read_text()
    for fig in FIGURES:
        assert f"{fig}.png" in report
    # the evaluation stage graded every run; Table 1 is read from those files
    config = yaml.safe_load((ROOT / "workflow/config/mini.yaml").read_text())
    runs = [r.run_id for r in expand_grid(config)]
    best_avg = {}
    for run_id in runs:
        with (results / "runs" / run_id / "benchmarks.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert rows and {r["benchmark"] for r in rows} == {"tiny_arith"} and {r["k"] for r in rows} == {"2"}
        assert rows[-1]["checkpoint"] == "final_model.pt" and rows[-1]["update"] == "16"
        kept = [r for r in rows if "best_model-u" in r["checkpoint"]]  # the run's best in-training checkpoint
        best_avg[run_id] = 100 * float((kept or rows)[-1]["avg_at_k"])
    assert "**Evaluation stage**" in report and "**Protocol of the evaluation stage**" in report
    with (results / "figures" / "table1_benchmarks.csv").open() as f:
        table = [r for r in csv.DictReader(f) if r["benchmark"] == "Avg"]
    assert table  # not vacuous: Table 1 has cells from the evaluation stage
    for r in table:  # one seed: the cell is the run's selected checkpoint
        run_id = RunSpec(r["model"], r["method"], int(r["staleness"]), 0).run_id
        assert float(r["mean"]) == pytest.approx(best_avg[run_id], abs=1e-6)
