"""The CPU mode of the verl path: verl's own ``RayPPOTrainer.fit`` with our trainer and worker, no Ray.

    python -m m2po.verl_plugin.launch --cpu --smoke --out DIR          # the documented command
    torchrun --nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port P \\
        -m m2po.verl_plugin.cpu_mode [hydra overrides]                 # what it runs (one process per rank)

What runs for real (verl 0.9.1's code, unchanged): ``RayPPOTrainer.fit`` of
:class:`~m2po.verl_plugin.trainer.M2POTrainer` (dataloader, agent loop, reward loop, GRPO advantages,
balancing, checkpoints, resume, metrics, file logger), :class:`~m2po.verl_plugin.workers.M2POActorRolloutRefWorker`
with verl's FSDP2 engine (``fsdp2``) on ``gloo``, the ``ppo_loss`` with our registered losses, verl's weight
sync (``update_weights`` with checkpoint engine ``naive``), verl's dispatch/collect helpers.

What stands in (docs/verl.md, "CPU mode"):

* **Ray.** Ray's resource pool wants GPUs and ``ray.init`` binds the machine's network address, so the
  ranks are ``torchrun`` processes on 127.0.0.1 and every rank runs the driver loop too (SPMD): a
  :class:`TorchrunWorkerGroup` calls the rank's own worker with its share of the data (verl's
  ``_split_args_kwargs_data_proto`` chunking, the ``dispatch_nd_compute`` rank mapping) and all-gathers
  the results, which verl's ``collect_*`` functions then concatenate, as Ray's worker group does.
* **vLLM.** HF ``generate`` behind verl's agent loop (:mod:`m2po.verl_plugin.cpu_rollout`).
* **The accelerator.** The CPU platform (:mod:`m2po.verl_plugin.cpu_platform`), and verl's FSDP engine
  registered for device ``cpu`` in verl's engine registry.

CPU settings applied on top of every configuration (:data:`CPU_OVERRIDES`): FSDP2 (FSDP1 needs a GPU),
no remove-padding (flash-attn), SDPA attention, rollout ``hf``, checkpoint engine ``naive``, no offload.

The same loop runs on GPUs (``M2PO_TORCHRUN_DEVICE=cuda``, ``launch --cpu --device cuda``): verl's own
CUDA platform, NCCL for the collectives (gloo for CPU objects), one GPU per rank; used by
scripts/gpu_check.sh where verl is installed.
The entry point a test (or issue 12's model merger) can call is :func:`train` in every rank, or the
launcher (``launch.cpu_command``).
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import socket
import sys
from typing import Any

import torch
import torch.distributed as dist

from .cpu_platform import PLATFORM_ENV, loopback_interface, use_cpu_platform
from .launch_common import run_env

__all__ = [
    "CPU_OVERRIDES",
    "DEVICE_ENV",
    "LocalCheckpointManager",
    "TorchrunWorkerGroup",
    "build_trainer",
    "compose",
    "cpu_command",
    "cpu_env",
    "train",
]

#: the device the torchrun loop runs on: "cpu" (default) or "cuda"
DEVICE_ENV = "M2PO_TORCHRUN_DEVICE"


def torchrun_device() -> str:
    device = os.environ.get(DEVICE_ENV, "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"{DEVICE_ENV} must be 'cpu' or 'cuda', got {device!r}")
    return device


#: applied after the user's overrides: what verl needs to run on a CPU (the issue's findings)
CPU_OVERRIDES = [
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.ref.strategy=fsdp2",
    "critic.strategy=fsdp2",
    "actor_rollout_ref.model.use_remove_padding=false",
    "++actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.actor.fsdp_config.param_offload=false",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=false",
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.rollout.checkpoint_engine.backend=naive",
]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any) -> list[Any]:
    rank, world = _rank_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _worker_group_base() -> type:
    from verl.single_controller.base.worker_group import WorkerGroup

    return WorkerGroup


class TorchrunWorkerGroup(_worker_group_base()):  # type: ignore[misc]
    """verl's ``WorkerGroup`` for SPMD processes: rank ``r`` holds worker ``r`` itself.

    Every method a verl worker registers (``@register(dispatch_mode=...)``) is bound by verl's own
    ``WorkerGroup._bind_worker_method``, as ``RayWorkerGroup`` binds it: the call is dispatched with the
    method's dispatch function (for the ``nd_compute`` modes: verl's chunking of the batch into
    ``dp_size`` parts and its rank → dp-rank mapping, minus ``ray.put``), the rank runs its share, the
    ranks all-gather the outputs, and the method's own collect function builds the result. Every rank
    must make the same calls in the same order (they all run the same driver loop).
    """

    def __init__(self, worker: Any) -> None:
        super().__init__(resource_pool=None)
        self.worker = worker
        self.rank, world = _rank_world()
        self._workers = list(range(world))  # world_size = len(_workers)
        self._bind_worker_method(type(worker), self._make_method)

    def execute_all(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the CPU mode calls methods through their dispatch functions only")

    execute_rank_zero = execute_all

    def _make_method(self, group: Any, method_name: str, dispatch_fn: Any, collect_fn: Any, **_: Any) -> Any:
        from verl.single_controller.base import decorator as dec

        def call(*args: Any, **kwargs: Any) -> Any:
            if isinstance(dispatch_fn, functools.partial) and dispatch_fn.func is dec.dispatch_lazy_compute_data_proto:
                mesh = dispatch_fn.args[0]
                if mesh not in self._dispatch_info:
                    self._dispatch_info[mesh] = self._query_dispatch_info(mesh)
                mapping = self._dispatch_info[mesh]
                split_args, split_kwargs = dec._split_args_kwargs_data_proto(max(mapping) + 1, *args, **kwargs)
                dp_rank = mapping[self.rank]
                # what the worker receives through ray.put/ray.get: its own deserialised copy
                local_args = [_transfer(a[dp_rank]) for a in split_args]
                local_kwargs = {k: _transfer(v[dp_rank]) for k, v in split_kwargs.items()}
            elif dispatch_fn is dec.dispatch_one_to_all:
                local_args, local_kwargs = list(args), dict(kwargs)
            else:
                raise NotImplementedError(
                    f"{type(self.worker).__name__}.{method_name}: dispatch {dispatch_fn} is not supported in the "
                    "CPU mode (only ONE_TO_ALL and the nd_compute modes the PPO worker uses)"
                )
            result = getattr(self.worker, method_name)(*local_args, **local_kwargs)
            if inspect.isawaitable(result):
                from .cpu_rollout import run_coroutine

                result = run_coroutine(_await(result))
            return collect_fn(self, _gather(result))

        call.__name__ = method_name
        return call


def _transfer(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


async def _await(awaitable: Any) -> Any:
    return await awaitable


class LocalCheckpointManager:
    """verl's ``CheckpointEngineManager`` for the colocated backend ``naive``: the actor group's own
    ``update_weights`` (FSDP ``get_per_tensor_param()`` → the rollout's ``update_weights``)."""

    def __init__(self, actor_wg: TorchrunWorkerGroup) -> None:
        self.actor_wg = actor_wg
        self.backend = "naive"

    def update_weights(self, global_steps: int | None = None) -> dict:
        self.actor_wg.update_weights(global_steps=global_steps, mode=self.backend)
        return {}

    def sleep_replicas(self) -> None:
        """The HF rollout keeps its weights in host memory between steps: nothing to put to sleep."""


def register_cpu_engine() -> None:
    """Register verl's FSDP language-model engine for device ``cpu`` in verl's engine registry (verl
    registers it for ``cuda`` and ``npu`` only; the engine itself is device-agnostic once the platform is)."""
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    registry = EngineRegistry._engines.get("language_model", {})
    if all("cpu" in registry.get(b, {}) for b in ("fsdp", "fsdp2")):
        return
    EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device="cpu")(FSDPEngineWithLMHead)


def compose(overrides: list[str]) -> Any:
    """The run's config: workflow/verl_hydra/m2po_trainer.yaml + ``overrides`` + :data:`CPU_OVERRIDES`, with the
    plugin's defaults filled in and checked like ``python -m m2po.verl_plugin.main`` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from .main import CONFIG_DIR, check_config, fill_defaults

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        device = [f"trainer.device={torchrun_device()}"]
        config = hydra_compose("m2po_trainer", overrides=[*overrides, *CPU_OVERRIDES, *device])
    fill_defaults(config)
    check_config(config)
    OmegaConf.resolve(config)
    return config


def build_trainer(config: Any) -> Any:
    """An :class:`~m2po.verl_plugin.trainer.M2POTrainer` whose workers are this rank's in-process ones
    (what ``RayPPOTrainer.init_workers`` builds with Ray, built here without it)."""
    from omegaconf import open_dict
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.single_controller.ray.base import ResourcePoolManager
    from verl.trainer.ppo.ray_trainer import Role
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.dataset.rl_dataset import collate_fn
    from verl.workers.config import HFModelConfig

    from m2po.config import ConfigError

    from .cpu_rollout import CPUAgentLoopManager, HFGenerateClient, InProcessActor, register_hf_rollout
    from .trainer import M2POTrainer
    from .workers import M2POActorRolloutRefWorker

    rank, world = _rank_world()
    for key, needed in (("critic", need_critic(config)), ("reference policy (KL)", need_reference_policy(config))):
        if needed:
            raise ConfigError(key, "is not supported by the CPU mode", hint="the paper's GRPO runs use neither")
    if int(config.trainer.nnodes) * int(config.trainer.n_gpus_per_node) != world:
        with open_dict(config):
            config.trainer.nnodes, config.trainer.n_gpus_per_node = 1, world
    if rank > 0:  # one driver log: rank 0 writes metrics.jsonl and the console
        with open_dict(config):
            config.trainer.logger = []
    if torchrun_device() == "cpu":
        register_cpu_engine()
    register_hf_rollout()

    model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model, dataclass_type=HFModelConfig)
    tokenizer, processor = model_config.tokenizer, model_config.processor
    data = config.data
    train_dataset = create_rl_dataset(data.train_files, data, tokenizer, processor, is_train=True)
    val_dataset = create_rl_dataset(data.val_files, data, tokenizer, processor, is_train=False)
    trainer = M2POTrainer(
        config=config,
        tokenizer=tokenizer,
        processor=processor,
        role_worker_mapping={Role.ActorRollout: M2POActorRolloutRefWorker},
        resource_pool_manager=ResourcePoolManager({"global_pool": [world]}, {Role.ActorRollout: "global_pool"}),
        ray_worker_group_cls=TorchrunWorkerGroup,
        train_dataset=train_dataset,
        val_dataset=val_dataset,
        collate_fn=collate_fn,
        train_sampler=create_rl_sampler(data, train_dataset),
        device_name="cpu",
    )
    # RayPPOTrainer.init_workers, without Ray: the same objects, in this process
    worker = M2POActorRolloutRefWorker(
        config=config.actor_rollout_ref, role=str(Role.ActorRollout), distillation_config=config.get("distillation")
    )
    trainer.actor_rollout_wg = TorchrunWorkerGroup(worker)
    trainer.actor_rollout_wg.init_model()
    trainer.reward_loop_manager = None  # rewards stream from the agent loop (no reward model)
    trainer.async_rollout_mode = True
    trainer.teacher_model_manager = None
    trainer.distillation_config = None
    trainer.llm_server_manager = None
    reward = InProcessActor(RewardLoopWorker(config, None))
    trainer.async_rollout_manager = CPUAgentLoopManager(config, HFGenerateClient(worker.rollout), [reward])
    trainer.checkpoint_manager = LocalCheckpointManager(trainer.actor_rollout_wg)
    trainer.checkpoint_manager.sleep_replicas()
    return trainer


def train(overrides: list[str]) -> Any:
    """Run one rank of the CPU mode (call it in every ``torchrun`` process); returns the trainer."""
    setup_process()
    config = compose(overrides)
    trainer = build_trainer(config)
    trainer.fit()
    return trainer


def setup_process() -> None:
    """This rank's platform and process group, from what torchrun put in the environment: on the CPU, the
    CPU platform and gloo on 127.0.0.1; on GPUs (``M2PO_TORCHRUN_DEVICE=cuda``), the rank's GPU, NCCL for
    device tensors and gloo for CPU ones (what verl's own initialisation asks for)."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
    torch.set_num_threads(max(1, int(os.environ.get("M2PO_CPU_THREADS", "1"))))
    if torchrun_device() == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    else:
        use_cpu_platform()
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        train(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


# -- starting it (the launcher's side) ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_command(
    overrides: list[str], ranks: int = 2, python: str = sys.executable, port: int | None = None
) -> list[str]:
    """``torchrun`` on 127.0.0.1, one process per data-parallel rank, each running :func:`main`."""
    return [
        python, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={ranks}", "--master-addr=127.0.0.1",
        f"--master-port={port or _free_port()}", "-m", "m2po.verl_plugin.cpu_mode", *overrides,
    ]  # fmt: skip


def cpu_env(out: str, device: str = "cpu") -> dict[str, str]:
    """The ranks' environment: the CPU platform (or verl's CUDA one with ``device="cuda"``), gloo on the
    loopback interface, verl's metrics file in run directory ``out``."""
    gloo_if = os.environ.get("GLOO_SOCKET_IFNAME", loopback_interface())
    env = {**run_env(out), "GLOO_SOCKET_IFNAME": gloo_if, DEVICE_ENV: device}
    return {**PLATFORM_ENV, **env} if device == "cpu" else env


if __name__ == "__main__":
    sys.exit(main())
