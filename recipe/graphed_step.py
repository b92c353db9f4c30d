"""GRPO's training step at fixed shapes, the part of it that a CUDA graph can hold.

train_grpo.build_trainer installs it unless training.cuda_graphs is false or ``declines`` names a reason. On an
H100 the default's forward and backward took 0.16-0.21 s eager and 0.060 s as one replayed CUDA graph
(bench/results/train-step.md), and the sweep's training phase 0.23-0.26 s/step through TRL's and Unsloth's step
against 0.07-0.10 s through this one (bench/LOG.md, 2026-12-07i and j): the host's kernel launches were the phase.

A graph needs fixed shapes and no host reads, so this lays one step's rows out at a fixed row length,
left-aligned (prompt then completion, pads on the right, which causal attention never reads), and computes the
completion log-probs and GRPO's loss from tensors alone. The loss is TRL 1.14.2's ``grpo`` (token-level ratios,
no importance-sampling correction) with Unsloth's clamps on the KL term and, under Unsloth, its loss mask
(unsloth_zoo rl_replacements.py): what the GPU path trains with through Unsloth's own step.
"""

from __future__ import annotations

import os
import time

import torch


def row_length(width: int, multiple: int = 32) -> int:
    """The fixed row length for rows of ``width`` tokens: a few lengths, so a few graphs, at ~10% padding."""
    return -(-width // multiple) * multiple


def layout(prompt_ids, prompt_mask, completion_ids, completion_mask, pad_id: int, length: int) -> dict:
    """One step's rows as [rows, length] token ids: each row's prompt tokens (TRL pads prompts on the left)
    then its completion, pads after. Also each completion token's position in the flattened rows of the
    hidden state that predicts it. Tensor operations only: no host reads, so it can run before a replay."""
    rows, prompt_width = prompt_ids.shape
    left_pad = prompt_width - prompt_mask.sum(1)  # [rows]
    tokens = torch.cat([prompt_ids, completion_ids], 1)
    real = torch.cat([prompt_mask, completion_mask], 1).bool()
    columns = torch.arange(length, device=tokens.device)
    source = columns.unsqueeze(0) + left_pad.unsqueeze(1)  # column j takes the token left_pad columns to its right
    inside = source < tokens.size(1)
    source = source.clamp(max=tokens.size(1) - 1)
    keep = inside & real.gather(1, source)
    ids = torch.where(keep, tokens.gather(1, source), torch.full_like(source, pad_id))
    prompt_len = prompt_mask.sum(1)
    # Completion token k of row i sits at prompt_len[i] + k; the hidden state one before it predicts it.
    k = torch.arange(completion_ids.size(1), device=tokens.device)
    predictor = (prompt_len.unsqueeze(1) + k.unsqueeze(0) - 1).clamp(max=length - 1)
    flat = predictor + length * torch.arange(rows, device=tokens.device).unsqueeze(1)
    return {
        "input_ids": ids,
        "position_ids": columns.expand(rows, length),
        "predictor": flat,  # [rows, completion width] into the [rows * length] flattened hidden states
        "targets": completion_ids,
        "mask": completion_mask.to(torch.float32),
    }


def loss_mask(completion_ids, completion_mask, pad_id: int, unsloth: bool):
    """The completion tokens the loss counts: TRL's mask, and under Unsloth only tokens that are not the pad id.
    Unsloth scores and trains rows with their pad-id tokens removed, so an EOS that is also the pad token (Qwen2.5's
    base models: <|endoftext|>) gets no old or reference log-prob (0) and no loss (unsloth_zoo rl_replacements.py
    599-606)."""
    mask = completion_mask.to(torch.float32)
    return mask * (completion_ids != pad_id) if unsloth else mask


def completion_columns(logps, prompt_mask, width: int):
    """Old or reference log-probs as [rows, width], lined up with the completion tokens. TRL's are already;
    Unsloth's scoring pass returns them from left-packed rows, width + the batch's largest left pad wide,
    completion token k of row i at column (largest left pad - row i's left pad) + k."""
    if logps is None or logps.size(1) == width:
        return logps
    left_pad = prompt_mask.size(1) - prompt_mask.sum(1)
    start = (logps.size(1) - width) - left_pad
    return logps.gather(1, start.unsqueeze(1) + torch.arange(width, device=logps.device).unsqueeze(0))


def scaled_logits(hidden, weight, temperature: float):
    """The LM head's logits in fp32, divided by the sampling temperature as TRL divides them."""
    return (hidden @ weight.t()).float() / temperature


# Completion tokens whose logits exist at once: 256 x Qwen2.5's 151,936-token vocabulary is 0.15 GB in fp32.
LOGIT_CHUNK = 256


class ChunkedLogProbs(torch.autograd.Function):
    """Each row's log-prob of its target under ``hidden @ weight.T / temperature``, with the logits made a chunk
    of rows at a time, forward and again in backward, never all at once: a graph holds its memory for the whole
    run, and a step's full fp32 logits (1,200 x 151,936) and their softmax would be 3 GB of it. The head's
    weight is frozen (LoRA does not train it): no gradient for it."""

    @staticmethod
    @torch.autocast("cuda", enabled=False)  # the product in the inputs' dtype, as backward recomputes it
    def forward(ctx, hidden, weight, targets, temperature: float):
        out = torch.empty(hidden.size(0), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), LOGIT_CHUNK):
            rows = slice(start, start + LOGIT_CHUNK)
            logits = scaled_logits(hidden[rows], weight, temperature)
            out[rows] = logits.gather(-1, targets[rows, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden)
        for start in range(0, hidden.size(0), LOGIT_CHUNK):
            rows = slice(start, start + LOGIT_CHUNK)
            logits = scaled_logits(hidden[rows], weight, ctx.temperature)
            # d log p(target) / d logits = onehot(target) - softmax(logits), through the division by temperature
            grad = torch.softmax(logits, -1).mul_(-grad_out[rows, None])
            grad.scatter_add_(-1, targets[rows, None], grad_out[rows, None])
            grad_hidden[rows] = (grad / ctx.temperature).to(hidden.dtype) @ weight
        return grad_hidden, None, None, None


def completion_logps(hidden, head_weight, predictor, targets, temperature: float):
    """Each completion token's log-prob under the policy, in fp32, from the hidden states that predict it."""
    h = hidden.reshape(-1, hidden.size(-1)).index_select(0, predictor.reshape(-1))
    if head_weight.requires_grad:  # a trained head (not LoRA's): the plain way, which gives it its gradient
        logps = (
            torch.log_softmax(scaled_logits(h, head_weight, temperature), -1)
            .gather(-1, targets.reshape(-1, 1))
            .squeeze(-1)
        )
    else:
        weight = head_weight
        if torch.is_autocast_enabled(h.device.type):  # the product in autocast's dtype, as autocast would run it
            dtype = torch.get_autocast_dtype(h.device.type)
            h, weight = h.to(dtype), head_weight.to(dtype)
        logps = ChunkedLogProbs.apply(h, weight, targets.reshape(-1), temperature)
    return logps.view(targets.shape)


def grpo_loss(new, old, ref, advantages, mask, beta: float, eps_low: float, eps_high: float, bias_correction_kl: bool):
    """GRPO's ``grpo`` loss (each row's masked token mean, then the mean over rows) and its statistics, as
    TRL logs them: [mean KL, low-clipped share, high-clipped share, clipped share, the least low-clipped
    row's share, the most high-clipped row's share], from tensors alone."""
    new, old, ref = (torch.where(mask.bool(), x, torch.zeros_like(x)) for x in (new, old, ref))
    ratio = torch.exp(new - old)
    a = advantages.unsqueeze(1)
    per_token = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a)
    if beta:
        x = torch.clamp(ref - new, -20.0, 20.0)
        kl = torch.clamp(torch.expm1(x) - x, -10.0, 10.0)
        if bias_correction_kl:
            kl = kl * ratio
        per_token = per_token + beta * kl
    else:
        kl = torch.zeros_like(new)
    tokens = mask.sum(1).clamp(min=1.0)
    loss = ((per_token * mask).sum(1) / tokens).mean()
    with torch.no_grad():
        low = ((ratio < 1 - eps_low) & (a < 0)).float()
        high = ((ratio > 1 + eps_high) & (a > 0)).float()
        total = mask.sum().clamp(min=1.0)
        shares = [(x * mask).sum() / total for x in (kl, low, high, torch.maximum(low, high))]
        per_row = [(x * mask).sum(1) / tokens for x in (low, high)]
        stats = torch.stack([*shares, per_row[0].min(), per_row[1].max()])
    return loss, stats


def padded(rows: dict, width: int) -> dict:
    """The per-completion-token tensors padded to ``width`` columns, masked: fixed shapes whatever the
    longest completion of the batch; the row length keeps the rest fixed."""
    out = dict(rows)
    for key in ("predictor", "targets", "mask", "old", "ref"):
        if rows.get(key) is not None:
            out[key] = torch.nn.functional.pad(rows[key], (0, width - rows[key].size(1)))
    return out


# At a generation's first step the policy is the one that scored the rollouts, so each completion token's
# new log-prob equals its old one up to bf16 kernels' rounding (Unsloth's packed eager rows, or graphed_scoring's
# batch of the generation's rows, against the step's). A larger gap there means the replay computed something
# else: e.g. it read memory that was freed.
FRESH_DRIFT_LIMIT = 3.0


def replay_suspect(values: list[float], fresh: bool) -> bool:
    """Whether a replay's statistics (see Step.compute) call for the step to be redone without its graph."""
    return not values[-1] or (fresh and values[-2] > FRESH_DRIFT_LIMIT)


def graph_at_fault(replayed: list[float], eager: list[float]) -> bool:
    """Whether the graph, not its inputs, gave the suspect result: the eager step on the same inputs is finite
    and (where the replay's was too) much closer to the old log-probs."""
    if not eager[-1]:
        return False
    return not replayed[-1] or replayed[-2] > 2 * eager[-2] + 1.0


def rope_tables(model) -> list:
    """Unsloth's RoPE cos/sin tables, which a graph reads by address. Unsloth's packed scoring pass grows them
    when a generation's rows add up to more tokens than they hold, and the old ones are freed: a graph that
    still read them replayed garbage (bench/LOG.md, 2026-12-07i). Each graph keeps the ones it captured alive;
    their rows depend only on the position, so they stay right for its rows."""
    return [
        table
        for module in model.modules()
        for table in (*getattr(module, "multi_gpu_cos_cached", ()), *getattr(module, "multi_gpu_sin_cached", ()))
        if isinstance(table, torch.Tensor)
    ]


def declines(trainer) -> str | None:
    """Why this trainer's step cannot run here, or None: the loss above, one process, no gradient accumulation."""
    a = trainer.args
    transforms, options = logit_transforms(trainer.model), unsloth_loss_options()
    checks = [
        (trainer.loss_type == "grpo", f"loss_type {trainer.loss_type}"),
        (trainer.importance_sampling_level == "token", "sequence-level importance sampling"),
        (a.gradient_accumulation_steps == 1, "gradient accumulation"),
        (trainer.num_iterations == 1, "num_iterations > 1"),
        (trainer.accelerator.num_processes == 1, "several processes (their gradients are reduced in backward)"),
        (not getattr(trainer, "_entropy_bonus_enabled", False), "an entropy bonus"),
        (trainer.top_entropy_quantile == 1.0, "top_entropy_quantile"),
        (trainer.off_policy_mask_threshold is None, "off_policy_mask_threshold"),
        (not trainer.use_liger_kernel, "the liger kernel"),
        (not getattr(trainer, "aux_loss_enabled", False), "a router loss"),
        (not trainer.tools, "tools"),
        (not getattr(trainer.accelerator.state, "deepspeed_plugin", None), "DeepSpeed"),
        (a.n_gpu <= 1, "DataParallel"),
        (trainer.accelerator.scaler is None, "fp16 loss scaling"),
        (getattr(a, "delta", None) is None, "two-sided clipping (delta)"),
        (not getattr(trainer.model, "is_gradient_checkpointing", False), "gradient checkpointing"),
        (not (trainer.use_vllm and trainer.vllm_importance_sampling_correction), "vLLM importance sampling"),
        (not getattr(a, "cast_lm_head_to_fp32", False), "cast_lm_head_to_fp32"),
        (not transforms, "logit softcapping, scaling or an LM-head bias"),
        (not options, "Unsloth's GRPO loss options " + ", ".join(options)),
    ]
    return next((why for ok, why in checks if not ok), None)


# Model config fields by which Unsloth transforms the logits before the log-softmax (unsloth_zoo
# device_map_planner.detect_logit_transforms); completion_logps applies none of them.
LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logits_soft_cap",
    "output_logit_soft_cap",
    "logit_scale",
    "lm_head_multiplier",
    "output_multiplier",
    "logits_scaling",
)


def logit_transforms(model) -> list[str]:
    """What ``model`` does to its logits that completion_logps does not: config fields, an LM-head bias."""
    config = getattr(model, "config", None)
    found = [name for name in LOGIT_TRANSFORMS if getattr(config, name, None) is not None]
    head = model.get_output_embeddings()
    return found + (["lm_head bias"] if getattr(head, "bias", None) is not None else [])


def unsloth_loss_options() -> list[str]:
    """Unsloth's environment switches that change its GRPO loss or scoring, set to change them."""
    on = ("1", "true", "yes", "on")
    switches = {
        "UNSLOTH_GRPO_ZERO_VARIANCE_EXCLUDE": os.environ.get("UNSLOTH_GRPO_ZERO_VARIANCE_EXCLUDE", "0") == "1",
        "UNSLOTH_GRPO_LOSS_AGGREGATION": bool(os.environ.get("UNSLOTH_GRPO_LOSS_AGGREGATION", "").strip()),
        "UNSLOTH_GRPO_TRUNCATED_SUPPORT": os.environ.get("UNSLOTH_GRPO_TRUNCATED_SUPPORT", "0").strip().lower() in on,
        # Scores and trains through an fp32 copy of the head (unsloth_zoo rl_replacements.py 172-176, 224-231).
        "UNSLOTH_VLLM_FP32_LM_HEAD": os.environ.get("UNSLOTH_VLLM_FP32_LM_HEAD", "0").strip().lower() in on,
    }
    return [name for name, set_ in switches.items() if set_]


class Step:
    """The trainer's training_step for the steps it covers: one step's rows at a fixed row length, the
    loss and the LoRA gradients from recipe code, then the Trainer's clipping and optimizer as before."""

    def __init__(self, trainer, unsloth: bool, capture: bool = True):
        self.trainer, self.unsloth = trainer, unsloth
        self.params = [p for p in trainer.model.parameters() if p.requires_grad]
        self.head = trainer.model.get_output_embeddings().weight
        self.capture = capture and self.head.is_cuda
        self.max_length = getattr(trainer.model, "max_seq_length", None)
        # One set of gradients every graph writes into, so that a dozen row lengths do not keep a dozen sets.
        self.grads = [torch.zeros_like(p) for p in self.params] if self.capture else None
        autocast = getattr(trainer, "_autocast_dtype", None)  # Unsloth fixes its mixed precision on the trainer
        self.dtype = autocast if autocast is not None else (torch.bfloat16 if trainer.args.bf16 else None)
        # row length -> (graph, its static inputs, its static outputs, the RoPE tables it reads)
        self.graphs: dict[int, tuple] = {}
        # recipe/graphed_scoring.py's no-grad graphs, in the same pool: here, so the pool's holders are in one place
        self.scoring_graphs: dict[tuple, tuple] = {}
        self.pool = None
        self.last = None  # the row length and padded rows of the latest replay, for recover()
        self.recovered = 0
        self.modules: list = []  # the model's modules, listed once for train_mode()

    def __call__(self, model, inputs, num_items_in_batch=None):
        t = self.trainer
        started = time.perf_counter()
        fresh = t._step % (t.args.steps_per_generation * t.num_iterations) == 0  # TRL generates at this step
        self.train_mode(model, relist=fresh)
        inputs = t._prepare_inputs(inputs)
        if "importance_sampling_ratio" in inputs or "tool_mask" in inputs:  # corrections this loss leaves out
            raise RuntimeError("graphed_step: this batch carries a correction the fixed-shape loss does not apply")
        loss, stats, grads = self.run(model, inputs)
        values = stats.tolist()  # the step's one host read
        if self.capture and replay_suspect(values, fresh):
            loss, values, grads = self.recover(model, values)
        for p, g in zip(self.params, grads):  # one step a batch: the Trainer set the gradients to None after the last
            p.grad = g
        self.log(values)
        t._step += 1
        t._current_train_step_time += time.perf_counter() - started
        t._metrics["train"]["step_time"].append(t._current_train_step_time)
        t._current_train_step_time = 0.0
        return loss.detach()

    def row_length(self, needed: int) -> int:
        """The fixed row length for rows of ``needed`` tokens at most."""
        length = row_length(needed)
        if self.max_length is not None and length > self.max_length:  # Unsloth cuts rows past its max_seq_length
            length = needed
        return length

    def autocast(self):
        """bf16 autocast as the Trainer runs the loss, without its weight-cast cache, which a graph cannot hold."""
        return torch.autocast(
            self.head.device.type,
            dtype=self.dtype or torch.bfloat16,
            enabled=self.head.is_cuda and self.dtype is not None,
            cache_enabled=False,
        )

    def run(self, model, inputs):
        """The loss, its statistics and the LoRA gradients: replayed from the row length's CUDA graph (captured
        on its first use), or computed eagerly."""
        t = self.trainer
        length = self.row_length(inputs["prompt_ids"].size(1) + inputs["completion_ids"].size(1))
        pad_id = t.processing_class.pad_token_id
        rows = layout(
            inputs["prompt_ids"],
            inputs["prompt_mask"],
            inputs["completion_ids"],
            inputs["completion_mask"],
            pad_id,
            length,
        )
        width = inputs["completion_ids"].size(1)
        old, ref = (
            completion_columns(inputs.get(key), inputs["prompt_mask"], width)
            for key in ("old_per_token_logps", "ref_per_token_logps")
        )
        mask = loss_mask(inputs["completion_ids"], inputs["completion_mask"], pad_id, self.unsloth)
        rows |= {"mask": mask, "old": old, "ref": ref, "advantages": inputs["advantages"]}
        if not self.capture:
            return self.compute(model, rows)
        rows = padded(rows, t.max_completion_length)
        self.last = (length, rows)
        if length not in self.graphs:
            began = time.perf_counter()
            self.graphs[length] = self.record(self.compute, model, rows)
            print(f"graphed_step: captured rows of {length} tokens in {time.perf_counter() - began:.1f} s", flush=True)
        graph, static, outputs, _ = self.graphs[length]
        for key, value in rows.items():
            if value is not None:
                static[key].copy_(value)
        graph.replay()
        return outputs

    def compute(self, model, rows):
        t = self.trainer
        with self.autocast():
            new = completion_logps(
                self.hidden(model, rows), self.head, rows["predictor"], rows["targets"], t.temperature
            )
            loss, stats = grpo_loss(
                new,
                new.detach() if rows["old"] is None else rows["old"],
                new.detach() if rows["ref"] is None else rows["ref"],
                rows["advantages"],
                rows["mask"],
                t.beta,
                t.epsilon_low,
                t.epsilon_high,
                t.args.use_bias_correction_kl,
            )
        grads = torch.autograd.grad(loss, self.params, allow_unused=True, materialize_grads=True)
        with torch.no_grad():  # checked before the optimizer sees them: one bad replay must not poison the weights
            norms = torch.stack(torch._foreach_norm(grads))
            finite = torch.isfinite(loss) & torch.isfinite(norms).all()
            # The largest |new - old| log-prob of a completion token: near 0 unless inputs are out of line.
            old = rows["old"] if rows["old"] is not None else new.detach()
            drift = torch.where(rows["mask"].bool(), (new.detach() - old).abs(), torch.zeros_like(new)).max()
            stats = torch.cat([stats, drift.float().unsqueeze(0), finite.float().unsqueeze(0)])
        if self.grads is None:
            return loss, stats, grads
        torch._foreach_copy_(self.grads, grads)
        return loss.detach().clone(), stats, self.grads

    def recover(self, model, replayed):
        """A suspect replay (replay_suspect): the step again without the graph, on the same inputs. Where the graph
        was at fault, that row length's graph is dropped, to be captured anew. Says what it found."""
        length, rows = self.last
        loss, stats, grads = self.compute(model, rows)
        values = stats.tolist()
        dropped = graph_at_fault(replayed, values)
        if dropped:
            del self.graphs[length]
            self.release_pool()
        if not values[-1]:  # not finite either way: no update rather than weights turned NaN
            torch._foreach_zero_(grads)
        mask = rows["mask"].bool()
        inputs = ", ".join(
            f"{key} {'finite' if bool(torch.isfinite(rows[key][mask]).all()) else 'NOT finite'}"
            for key in ("old", "ref")
            if rows.get(key) is not None
        )
        self.recovered += 1
        print(
            f"graphed_step: the graph of {length}-token rows gave a suspect step (recovery {self.recovered}): "
            f"{'finite' if replayed[-1] else 'NOT finite'}, largest |new - old| log-prob {replayed[-2]:.4g}; "
            f"without it: loss {loss.item():.4g}, {'finite' if values[-1] else 'NOT finite'}, largest |new - old| "
            f"{values[-2]:.4g}; inputs: {inputs or 'no old or reference log-probs'}; "
            f"{'graph dropped, to be captured anew' if dropped else 'graph kept: its inputs, not it'}"
            f"{'' if values[-1] else '; the update is skipped'}",
            flush=True,
        )
        return loss, values, grads

    def train_mode(self, model, relist: bool = False):
        """model.train(), unless every module is in training mode already: the call walks the whole module tree
        (about 3,000 modules in the 3B) through generators on every step, where a list read suffices. The list is
        made again at each generation (``relist``), so that a module added since is not missed for long."""
        if relist or not self.modules or self.modules[0] is not model:
            self.modules = list(model.modules())
        if not all(module.training for module in self.modules):
            model.train()

    def record(self, compute, model, rows):
        """``compute(model, rows)`` as a CUDA graph, warmed up on a side stream first (Triton compiles there,
        not in the capture). Its inputs are static copies, refilled before each replay; every graph draws on
        one memory pool, as only one runs at a time and its outputs are read (or copied) before the next."""
        static = {key: value.clone() for key, value in rows.items() if value is not None}
        static |= {key: None for key, value in rows.items() if value is None}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                compute(model, static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.pool = self.pool or torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = compute(model, static)
        return graph, static, outputs, rope_tables(model)

    def release_pool(self):
        """Forget the pool once no graph holds it: a pool no graph holds must not be captured into again
        (pytorch#198794)."""
        if not self.graphs and not self.scoring_graphs:
            self.pool = None

    def hidden(self, model, rows):
        """The rows' final hidden states. Every row has the same length, so they go in as a batch, not packed
        into one stream: Unsloth's packed attention keeps its segment tensors in caches keyed by tensor
        identity, which its next scoring pass replaces while a graph still reads them."""
        inputs = {"input_ids": rows["input_ids"], "position_ids": rows["position_ids"], "use_cache": False}
        if not self.unsloth:
            return model(**inputs, output_hidden_states=True).hidden_states[-1]
        previous = os.environ.get("UNSLOTH_RETURN_HIDDEN_STATES")
        os.environ["UNSLOTH_RETURN_HIDDEN_STATES"] = "1"  # Unsloth then returns the hidden states as .logits
        try:
            return model(**inputs).logits
        finally:
            if previous is None:
                os.environ.pop("UNSLOTH_RETURN_HIDDEN_STATES")
            else:
                os.environ["UNSLOTH_RETURN_HIDDEN_STATES"] = previous

    def log(self, values):
        """TRL's step metrics for this loss: the KL (when beta is on) and the clipped shares."""
        t = self.trainer
        kl, low, high, region, low_min, high_max = values[:6]
        metrics = t._metrics["train"]
        if t.beta:
            metrics["kl"].append(kl)
        for name, value in [
            ("low_mean", low),
            ("high_mean", high),
            ("region_mean", region),
            ("low_min", low_min),
            ("high_max", high_max),
        ]:
            metrics[f"clip_ratio/{name}"].append(value)


def install(trainer, unsloth: bool, four_bit: bool = False) -> str | None:
    """Route the trainer's steps through Step; why not, when it declines. On a GPU only Unsloth's 16-bit model
    has been captured and measured; elsewhere (the tests' CPU) the same fixed shapes run without graphs."""
    why = declines(trainer)
    if why is None and trainer.model.get_output_embeddings().weight.is_cuda:
        if not unsloth:
            why = "the trl backend, whose CUDA graphs have never run"
        elif four_bit:
            why = "4-bit weights, whose CUDA graphs have never run"
    if why is None:
        trainer.training_step = Step(trainer, unsloth)
        unasked_sampled_logprobs(getattr(trainer, "vllm_generation", None))
    return why


def unasked_sampled_logprobs(generation) -> None:
    """vLLM samples without each token's log-prob, which TRL asks for (logprobs=0) for the importance-sampling
    correction and off-policy mask that Step declines, so nothing reads them: a log-softmax over the vocabulary
    every decode step, and then a Python pass over every sampled token (trl/generation/vllm_generation.py
    extract_logprobs). TRL still indexes one list per sequence (grpo_trainer.py 1877): an empty one each."""
    if generation is None or "logprobs" in generation.generation_kwargs:  # the user's, which TRL's update keeps
        return
    generation.logprobs = None
    generate = generation.generate

    def without_logprobs(*args, **kwargs):
        prompt_ids, completion_ids, logprobs, token_ids = generate(*args, **kwargs)
        return prompt_ids, completion_ids, [[] for _ in completion_ids] if logprobs is None else logprobs, token_ids

    generation.generate = without_logprobs


def describe(trainer) -> str:
    """The training step an installed Step gives: CUDA graphs on a GPU, the same fixed shapes eagerly elsewhere."""
    if trainer.training_step.capture:
        return "recipe/graphed_step.py, a CUDA graph per 32-token row length"
    return "recipe/graphed_step.py's fixed shapes, without CUDA graphs (no CUDA device)"
