"""Several processes: the whole run keeps the YAML's batch, bad splits fail before loading, and two real
gloo processes on the CPU (accelerate launch, then torchrun to resume) leave what one process leaves."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import train_grpo
from conftest import ROOT, tiny_cli, train_tiny
from recipe import distributed
from recipe.backend import describe_backend, resolve_backend
from recipe.config import load_config
from recipe.errors import RecipeError
from recipe.grpo_config import grpo_args

TINY = str(ROOT / "configs" / "tiny-cpu.yaml")
STEPS = 4


@pytest.mark.parametrize(
    "prompts, generations, world, expected",
    [
        pytest.param(1, 6, 1, 6, id="one-process-takes-all"),
        pytest.param(2, 4, 2, 4, id="tiny-yaml-on-2"),
        pytest.param(1, 6, 3, 2, id="group-spans-processes"),
        pytest.param(8, 8, 8, 8, id="14b-yaml-on-8"),
        pytest.param(1, 6, 4, "use training.prompts_per_step=2 or training.num_generations=8", id="6-over-4"),
        pytest.param(3, 4, 8, "use training.prompts_per_step=4 or training.num_generations=8", id="12-over-8"),
    ],
)
def test_per_device_batch_keeps_the_whole_runs_step(prompts, generations, world, expected):
    cfg = load_config(TINY, [f"training.prompts_per_step={prompts}", f"training.num_generations={generations}"])
    if isinstance(expected, str):
        with pytest.raises(
            RecipeError,
            match=f"= {prompts * generations} completions cannot be split over {world} processes: {expected}$",
        ):
            distributed.per_device_batch(cfg, world)
    else:
        assert distributed.per_device_batch(cfg, world) == expected


@pytest.mark.parametrize(
    "env, world, main",
    [
        pytest.param({}, 1, True, id="plain-python"),
        pytest.param({"WORLD_SIZE": "4", "RANK": "0"}, 4, True, id="rank-0"),
        pytest.param({"WORLD_SIZE": "4", "RANK": "3"}, 4, False, id="rank-3"),
    ],
)
def test_world_comes_from_the_launchers_environment(monkeypatch, env, world, main):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (distributed.world_size(), distributed.is_main_process()) == (world, main)


@pytest.mark.parametrize(
    "rank, printed", [pytest.param("0", True, id="main-process"), pytest.param("1", False, id="other-process")]
)
def test_only_the_main_process_reports_a_config_error(monkeypatch, capsys, tmp_path, rank, printed):
    monkeypatch.setenv("RANK", rank)
    assert (
        train_grpo.main(["--config", TINY, "--set", "training.max_stesp=5", "--set", f"output.dir={tmp_path / 'run'}"])
        == 2
    )
    assert capsys.readouterr().err.startswith("error: unknown config key") == printed


@pytest.mark.parametrize(
    "overrides, world, expected",
    [
        pytest.param(["model.backend=auto"], 2, "trl", id="auto-on-2-is-trl"),
        pytest.param(["model.backend=trl"], 2, "trl", id="trl-on-2"),
        pytest.param(
            ["model.backend=unsloth"],
            2,
            "model.backend=unsloth trains in one process, and this run has 2: use model.backend=trl",
            id="unsloth-on-2",
        ),
    ],
)
def test_backend_for_several_processes(overrides, world, expected):
    cfg = load_config(TINY, overrides)
    if expected == "trl":
        assert resolve_backend(cfg, world) == "trl"
    else:
        with pytest.raises(RecipeError, match=expected):
            resolve_backend(cfg, world)


@pytest.mark.parametrize(
    "overrides, world, shown",
    [
        pytest.param(
            ["model.backend=auto"], 2, "trl (auto: 2 processes; Unsloth trains on one GPU only)", id="auto-several"
        ),
        pytest.param(["model.backend=auto"], 1, "trl (auto: no CUDA GPU)", id="auto-cpu"),
        pytest.param(["model.backend=trl"], 2, "trl", id="asked-for"),
    ],
)
def test_banner_says_why_auto_chose(overrides, world, shown):
    assert describe_backend(load_config(TINY, overrides), "trl", world) == shown


@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param(["vllm.mode=remote"], "vllm.mode='remote': use colocate", id="unknown-mode"),
        pytest.param(
            ["vllm.mode=server", "model.fast_inference=false"],
            "vllm.mode=server generates on a vLLM server: set model.fast_inference=true",
            id="server-without-vllm",
        ),
        pytest.param(
            ["vllm.mode=server", "model.backend=unsloth"],
            "vllm.mode=server needs model.backend=trl",
            id="server-with-unsloth",
        ),
        pytest.param(
            ["vllm.mode=server", "vllm.tensor_parallel_size=2"],
            "leave it at 1 and start the server with `vllm serve --tensor-parallel-size 2`",
            id="server-tp",
        ),
        pytest.param(
            ["vllm.tensor_parallel_size=2", "model.backend=unsloth"],
            "needs model.backend=trl: Unsloth's vLLM runs on one GPU",
            id="tp-with-unsloth",
        ),
        pytest.param(
            ["vllm.tensor_parallel_size=2", "model.fast_inference=false"],
            "needs model.fast_inference=true",
            id="tp-without-vllm",
        ),
        pytest.param(["vllm.tensor_parallel_size=0"], "vllm.tensor_parallel_size=0: use 1", id="tp-zero"),
        pytest.param(["vllm.server_port=70000"], "vllm.server_port=70000: use a TCP port", id="bad-port"),
        pytest.param(["vllm.sever_port=8001"], "did you mean 'vllm.server_port'", id="typo"),
    ],
)
def test_vllm_settings_that_cannot_work_fail_at_load(overrides, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_config(str(ROOT / "config.yaml"), overrides)


@pytest.mark.parametrize(
    "tp, world, message",
    [
        pytest.param(2, 8, None, id="2-divides-8"),
        pytest.param(
            4, 2, "vllm.tensor_parallel_size=4 must divide the 2 training processes: use one of 1, 2", id="4-over-2"
        ),
        pytest.param(2, 3, "use one of 1, 3, or launch a multiple of 2 processes", id="2-over-3"),
    ],
)
def test_colocated_tensor_parallel_must_divide_the_processes(tp, world, message):
    cfg = load_config(str(ROOT / "config.yaml"), ["model.backend=trl", f"vllm.tensor_parallel_size={tp}"])
    if message is None:
        distributed.check_vllm_split(cfg, world)
    else:
        with pytest.raises(RecipeError, match=message):
            distributed.check_vllm_split(cfg, world)


def test_server_settings_reach_grpo_config(tmp_path):
    cfg = load_config(
        str(ROOT / "config.yaml"),
        [
            f"output.dir={tmp_path}",
            "model.backend=trl",
            "training.optim=adamw_torch",
            "vllm.mode=server",
            "vllm.server_host=10.0.0.7",
            "vllm.server_port=8001",
        ],
    )
    args = grpo_args(cfg, "trl", [0], world=1)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_host, args.vllm_server_port) == (
        True,
        "server",
        "10.0.0.7",
        8001,
    )
    assert args.vllm_max_model_length == cfg.model.max_seq_length


def test_shipped_multi_gpu_recipe_splits_over_4_and_8_gpus():
    cfg = load_config(str(ROOT / "configs" / "qwen2.5-14b-16bit-multi-gpu.yaml"))
    assert (cfg.model.backend, cfg.vllm.mode, cfg.vllm.tensor_parallel_size) == ("trl", "colocate", 2)
    for world in (4, 8):
        distributed.check_vllm_split(cfg, world)
        assert (
            distributed.per_device_batch(cfg, world) * world
            == cfg.training.prompts_per_step * cfg.training.num_generations
        )


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_shipped_accelerate_configs_load_and_deepspeed_is_pinned(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    launch = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert raw["num_machines"] == 1 and launch.distributed_type.value == raw["distributed_type"]
    if launch.distributed_type.value == "DEEPSPEED":
        assert launch.deepspeed_config["zero_stage"] == int(name[-1])
        assert any(line.startswith("deepspeed==") for line in (ROOT / "requirements.txt").read_text().splitlines())


# Two real processes ---------------------------------------------------------------------------------


def tiny_args(tiny_assets: Path, out: Path, *extra: str) -> list[str]:
    return [
        *tiny_cli(tiny_assets, out),
        "--set",
        f"training.max_steps={STEPS}",
        "--set",
        "output.save_steps=2",
        "--set",
        "output.sample_every=2",
        *extra,
    ]


def launch(launcher: list[str], args: list[str]) -> subprocess.CompletedProcess:
    # One torch thread per process: two processes share the CI machine's two cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", *launcher, str(ROOT / "train_grpo.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def free_port() -> int:
    """A port nothing listens on now: a fixed one fails the run wherever another job holds it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate() -> list[str]:
    config = ROOT / "configs" / "accelerate" / "ddp.yaml"
    port = str(free_port())
    return [
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes",
        "2",
        "--main_process_port",
        port,
    ]


def torchrun() -> list[str]:
    return ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outputs(out: Path) -> set[str]:
    """What a run leaves, with the per-process RNG states (one file per rank) named alike."""
    return {
        str(p.relative_to(out)).replace("rng_state_0.pth", "rng_state.pth")
        for p in out.rglob("*")
        if p.is_file() and "rng_state_1" not in p.name
    }


def final_state(out: Path) -> dict:
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return {"global_step": state["global_step"], "epoch": state["epoch"]}


@pytest.fixture(scope="module")
def two_processes(tiny_assets, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("two")
    done = launch(accelerate(), tiny_args(tiny_assets, out))
    return out, done.stdout


@pytest.fixture(scope="module")
def one_process(tiny_assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    assert train_tiny(tiny_assets, out, *tiny_args(tiny_assets, out)[2:]) == 0
    return out


def test_two_processes_leave_the_files_one_process_leaves(two_processes, one_process):
    out, _ = two_processes
    assert outputs(out) == outputs(one_process)
    assert (out / "checkpoint-2" / "rng_state_1.pth").is_file(), "each process keeps its own RNG state to resume"


def test_two_processes_train_the_same_steps_and_epochs_as_one(two_processes, one_process):
    out, _ = two_processes
    assert final_state(out) == final_state(one_process)


def test_two_processes_log_each_step_and_sample_once(two_processes):
    out, _ = two_processes
    assert [row["step"] for row in read_jsonl(out / "metrics.jsonl") if "reward" in row] == list(range(1, STEPS + 1))
    samples = read_jsonl(out / "samples.jsonl")
    # Each process holds half of the 2 x 4 completions; the main one records its own half.
    assert sorted(row["step"] for row in samples) == [2] * 4 + [4] * 4


def test_two_processes_print_the_plan_once_with_the_split(two_processes):
    _, printed = two_processes
    assert printed.count("plan 4 steps") == 1 and printed.count("done in") == 1
    assert "split 2 processes x 4 completions each = 2 prompt(s) x 4 completions a step" in printed


def test_two_processes_save_one_adapter_that_loads(two_processes, tiny_assets):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = two_processes
    tokenizer = AutoTokenizer.from_pretrained(str(out / "adapter"))
    ids = tokenizer("Tom has 3 apples.", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(str(tiny_assets / "model"))
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, str(out / "adapter"))(ids).logits
    assert not torch.allclose(before, after)


def test_two_processes_resume_from_their_checkpoint(two_processes, tiny_assets, tmp_path):
    # A run killed during step 3: checkpoint-2 on disk, steps 3 and 4 already in the logs, no adapter.
    out = tmp_path / "run"
    shutil.copytree(two_processes[0], out)
    for name in (f"checkpoint-{STEPS}", "adapter", "plots"):
        shutil.rmtree(out / name)
    launch(torchrun(), tiny_args(tiny_assets, out, "--resume"))
    assert final_state(out) == final_state(two_processes[0])
    assert [row["step"] for row in read_jsonl(out / "metrics.jsonl") if "reward" in row] == list(range(1, STEPS + 1))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
