"""``python -m m2po.verl_plugin.main [hydra overrides]``: verl's PPO entry point with the M2PO trainer.

The same as ``python -m verl.trainer.main_ppo`` (verl's legacy ``RayPPOTrainer`` path,
``trainer.use_v1=false``) except that:

* the config is ``workflow/verl_hydra/m2po_trainer.yaml`` (verl's ``ppo_trainer`` plus the paper's settings and
  an ``m2po`` section); another directory can be given with Hydra's ``--config-dir``;
* the Ray task runner is verl's own ``TaskRunner`` with two hooks: the actor worker class is
  :class:`~m2po.verl_plugin.workers.M2POActorRolloutRefWorker` (``minibatch`` mask scope) and the trainer
  class is :class:`~m2po.verl_plugin.trainer.M2POTrainer` (exact staleness). verl's ``run`` builds the
  trainer by looking up ``RayPPOTrainer`` in its module at call time, so the runner points that name at
  our subclass inside its own (Ray actor) process before calling verl's ``run`` unchanged.

Importing this module needs verl's full runtime (ray, vLLM, cachetools, fastapi, uvicorn): GPU clusters
only (environment.yml).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
import ray
from omegaconf import DictConfig, open_dict
from verl.trainer import main_ppo_v0
from verl.trainer.main_ppo import run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

import m2po.verl_plugin  # noqa: F401  (registers the losses in the driver even with VERL_USE_EXTERNAL_PLUGINS=none)
from m2po.config import ConfigError

from .launch_common import METRICS_ENV

#: workflow/verl_hydra in the repository (an editable install, as environment.yml does)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "workflow" / "verl_hydra"


def _verl_task_runner_class() -> type:
    """The plain Python class behind verl's ``@ray.remote`` ``TaskRunner``."""
    actor_cls = main_ppo_v0.TaskRunner
    modified = getattr(getattr(actor_cls, "__ray_metadata__", None), "modified_class", None)
    for cls in getattr(modified, "__mro__", ()):
        if cls.__qualname__ == "TaskRunner" and cls.__module__ == main_ppo_v0.__name__:
            return cls
    raise RuntimeError("cannot find verl's TaskRunner class behind its Ray actor (verl version mismatch?)")


class M2POTaskRunnerImpl(_verl_task_runner_class()):  # type: ignore[misc]
    """verl's ``TaskRunner`` with the M2PO worker and trainer classes."""

    def add_actor_rollout_worker(self, config: DictConfig) -> tuple[type, Any]:
        from verl.trainer.ppo.ray_trainer import Role

        from .workers import M2POActorRolloutRefWorker

        _, worker_group_cls = super().add_actor_rollout_worker(config)
        for role in (Role.ActorRollout, Role.ActorRolloutRef):
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(M2POActorRolloutRefWorker)
        return M2POActorRolloutRefWorker, worker_group_cls

    def run(self, config: DictConfig) -> None:
        from .trainer import M2POTrainer

        main_ppo_v0.RayPPOTrainer = M2POTrainer  # this Ray actor's process only
        super().run(config)


M2POTaskRunner = ray.remote(M2POTaskRunnerImpl)


def fill_defaults(config: DictConfig) -> None:
    """What the driver knows and the Ray processes may not (another node, another working directory):

    * ``reward.custom_reward_function.path: null`` means our reward (m2po/verl_plugin/reward.py);
    * ``trainer.default_local_dir`` (checkpoints, and the stale queue under it) becomes absolute;
    * the driver's ``VERL_FILE_LOGGER_PATH`` (verl's metrics file), made absolute, goes into
      ``ray_kwargs.ray_init.runtime_env.env_vars`` unless the config sets it there already.
    """
    from . import reward

    crf = config.reward.custom_reward_function
    with open_dict(config):
        if crf.get("path", None) is None:
            crf.path = str(Path(reward.__file__).resolve())
            crf.name = crf.get("name", None) or "compute_score"
        config.trainer.default_local_dir = os.path.abspath(str(config.trainer.default_local_dir))
        logger_path = os.environ.get(METRICS_ENV)
        ray_init = config.ray_kwargs.ray_init
        if ray_init.get("runtime_env", None) is None:
            ray_init.runtime_env = {}
        if ray_init.runtime_env.get("env_vars", None) is None:
            ray_init.runtime_env.env_vars = {}
        env_vars = ray_init.runtime_env.env_vars
        if logger_path and METRICS_ENV not in env_vars:
            env_vars[METRICS_ENV] = os.path.abspath(logger_path)
        elif METRICS_ENV in env_vars:
            env_vars[METRICS_ENV] = os.path.abspath(str(env_vars[METRICS_ENV]))


def check_config(config: DictConfig) -> None:
    """verl's own validation plus what the M2PO trainer needs (raises ConfigError with a fix)."""
    if config.trainer.get("use_v1", False):
        raise ConfigError("trainer.use_v1", "must be false", hint="the M2PO trainer subclasses verl's RayPPOTrainer")
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


@hydra.main(config_path=str(CONFIG_DIR), config_name="m2po_trainer", version_base=None)
def main(config: DictConfig) -> None:
    auto_set_device(config)
    fill_defaults(config)
    check_config(config)
    run_ppo(config, task_runner_class=M2POTaskRunner)


if __name__ == "__main__":
    main()
