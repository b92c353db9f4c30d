"""A generation's old and reference log-probs from recipe/graphed_step.py's fixed-shape forward.

On an H100 the sweep's log-probs phase took 0.12 s/step against a 0.024 s floor, the GPU 41% busy, 0.053 s of it
kernels (bench/LOG.md 2026-12-07j, bench/results/profile-default.md): once a generation Unsloth's eager scoring
pass runs the policy and, for the KL, the model with its adapter disabled, each ~3,000 kernel launches from the
host with host reads between. Here each is one replayed CUDA graph per row length and role, in the Step's pool.

What it replaces gives the loss log-probs, not hidden states (unsloth/models/rl_replacements.py 2485-3242; the
hidden states stay inside it): fp32, each completion token's log-prob under the head's product in the trainer's
autocast dtype, divided by the temperature (unsloth_zoo rl_replacements.py 224-262), from rows with every pad-id
token removed (left_pack_padding), so a pad-id EOS gets 0; laid out [rows, completion width + the batch's largest
left pad], row i's token k at column (largest left pad - its own) + k, 0 elsewhere (rl_replacements.py 2933-2943).
TRL's own pass gives [rows, completion width]. ``Scoring`` returns the layout of the pass it replaces.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from recipe import graphed_step

# A graph's first two scorings (its capture's inputs, then new ones), and every AUDIT_EVERY-th after, are checked
# against the pass they replace: before these graphs the old log-probs came from that independent eager pass, and
# the Step's drift check caught a graph that replayed garbage; from the same forward as the Step's, a fault would
# agree with itself. The bands are Unsloth's for its own packed pass against per-row forwards (unsloth/models/
# rl_replacements.py 3017-3036: kernel noise ~0.25 nats, rows reading each other's tokens >= 2.4); this compares
# with that packed pass, so noise can add up on both sides: a gap between the bands takes the replaced pass's
# values for that call and audits again, and only AUDIT_STRIKES such gaps in a row, or one past AUDIT_DISTRUST,
# leave the rows to it for good.
AUDIT_EVERY = 50
AUDIT_LIMIT = 0.7
AUDIT_DISTRUST = 1.5
AUDIT_STRIKES = 3


def unsloth_columns(logps, left_pad, max_left_pad: int):
    """Completion log-probs [rows, width] in Unsloth's columns (graphed_step.completion_columns reads them back)."""
    rows, width = logps.shape
    columns = (max_left_pad - left_pad).unsqueeze(1) + torch.arange(width, device=logps.device)
    return logps.new_zeros(rows, width + max_left_pad).scatter_(1, columns, logps)


def packing_agrees(input_ids, attention_mask, pad_id: int):
    """Whether Unsloth's packing, which drops pad-id tokens rather than masked ones, leaves every row's tokens
    where TRL's mask leaves them, up to its last real token (a pad-id EOS may differ: 0 either way). Then each
    real token sits at the same position in both, so has the same log-prob. A tensor: no host read."""
    real = attention_mask.bool()
    columns = torch.arange(real.size(1), device=real.device)
    last = torch.where(real, columns, -1).amax(1, keepdim=True)
    return ~(((input_ids != pad_id) != real) & (columns < last)).any()


def adapters_disabled(model):
    """True under PEFT's disable_adapter() (TRL's reference), False with them on, None if not a PEFT model."""
    return getattr(model, "_adapters_disabled", None)


def dropout(model) -> bool:
    """Whether the model drops anything out in training mode, where TRL scores (nn.Dropout or attention's)."""
    modules = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    return modules or bool(getattr(getattr(model, "config", None), "attention_dropout", 0.0))


def precision_latch(original):
    """Unsloth's GRPO precision latch, as the compiled trainer's scoring pass calls it, or None (TRL's pass)."""
    return inspect.unwrap(getattr(original, "__func__", original)).__globals__.get("_unsloth_grpo_autocast")


def declines(trainer) -> str | None:
    """Why the trainer's scoring pass stays its own, or None: where the Step declines, and where a forward of
    the trained model with its adapter on or off is not what the pass computes."""
    why = graphed_step.declines(trainer)
    if why is not None:
        return why
    model = trainer.accelerator.unwrap_model(trainer.model)
    step = trainer.training_step
    generate_every = trainer.args.steps_per_generation * trainer.num_iterations
    checks = [
        (isinstance(step, graphed_step.Step), "TRL's own training step"),
        (trainer.beta != 0.0 or generate_every > 1, "no scoring pass (beta 0, a generation every step)"),
        (getattr(trainer, "ref_model", None) is None, "a separate reference model"),
        (adapters_disabled(model) is not None, "not a PEFT model"),
        (not model.get_output_embeddings().weight.requires_grad, "a trained LM head (the reference's is another)"),
        (not dropout(model), "dropout, which a graph would replay with the same mask"),
        (
            not step.unsloth or precision_latch(trainer._get_per_token_logps_and_entropies) is not None,
            "an Unsloth scoring pass without its precision latch (_unsloth_grpo_autocast)",
        ),
    ]
    return next((why for ok, why in checks if not ok), None)


class Scoring:
    """The trainer's _get_per_token_logps_and_entropies for a generation's scoring: the policy's log-probs or the
    reference's (the adapter disabled, or TRL's "ref" adapter active), from the Step's rows; anything else, or a
    log-prob that is not finite, goes to the pass it replaces (``original``)."""

    def __init__(self, trainer, original):
        self.trainer, self.original = trainer, original
        self.step: graphed_step.Step = trainer.training_step
        self.latch = precision_latch(original)
        self.said: set[str] = set()
        self.scored = self.fell_back = 0
        self.key: tuple = ()  # the latest call's graph key: its role, the model's mode and the rows' shape
        self.uses: dict[tuple, int] = {}  # scorings by each key's graph since its capture
        self.strikes: dict[tuple, int] = {}  # audits in a row with a gap between the bands
        self.distrusted: set[tuple] = set()  # keys left to the replaced pass for good

    def __call__(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        why = self.declines(model, args, kwargs)
        if why is None:
            logps, why = self.score(model, input_ids, attention_mask, logits_to_keep)
        if why is None and self.audit_due():
            theirs = self.original(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
            why = self.audit(logps, theirs[0], attention_mask, input_ids, logits_to_keep)
            if why is not None:
                self.fell_back += 1
                print(f"graphed_scoring: the trainer's own scoring pass ({why})", flush=True)
                return theirs
        if why is None:
            self.scored += 1
            self.uses[self.key] = self.uses.get(self.key, 0) + 1
            return logps, None, None
        return self.fall_back(why, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)

    def audit_due(self) -> bool:
        uses = self.uses.get(self.key, 0)
        return uses < 2 or uses % AUDIT_EVERY == 0 or self.strikes.get(self.key, 0) > 0

    def audit(self, ours, theirs, attention_mask, input_ids, width: int) -> str | None:
        """None where this call's log-probs agree with the replaced pass's over the tokens the loss counts; else
        why not: this call takes that pass's values, and past the bands (above) so does the key from now on."""
        key = self.key
        prompt_mask = attention_mask[:, :-width]
        pad_id = self.trainer.processing_class.pad_token_id
        mask = graphed_step.loss_mask(input_ids[:, -width:], attention_mask[:, -width:], pad_id, self.step.unsloth)
        columns = [graphed_step.completion_columns(x.float(), prompt_mask, width) for x in (ours, theirs)]
        gap = float(((columns[0] - columns[1]).abs() * mask).nan_to_num(float("inf")).max())  # the audit's host read
        rows = f"the {key[0]}'s {key[-1]}-token rows"
        if gap < AUDIT_LIMIT:
            self.strikes.pop(key, None)
            if key[0] not in self.said:  # once a role: the audits that pass after it say nothing
                self.said.add(key[0])
                print(f"graphed_scoring: audit: {rows} within {gap:.3f} nats of the trainer's own pass", flush=True)
            return None
        self.strikes[key] = self.strikes.get(key, 0) + 1
        if gap < AUDIT_DISTRUST and self.strikes[key] < AUDIT_STRIKES:
            return f"this time: {rows} {gap:.2f} nats from it, {self.strikes[key]} of {AUDIT_STRIKES} strikes"
        self.distrusted.add(key)
        self.drop(key)
        return f"{rows} {gap:.2f} nats from it: from now on"

    def declines(self, model, args, kwargs) -> str | None:
        """Why this call is not a generation's text-only scoring of the trained model, or None."""
        extra = sorted(k for k, v in kwargs.items() if k != "batch_size" and v is not None and v is not False)
        checks = [
            (not torch.is_grad_enabled(), "a pass with gradients (a loss's)"),
            (not args and not extra, "arguments beyond the text rows: " + ", ".join(extra or ["positional"])),
            (model is self.trainer.model, "another model"),
            (self.autocast_agrees(), "Unsloth's latched precision is not the step's"),
        ]
        return next((why for ok, why in checks if not ok), None)

    def autocast_agrees(self) -> bool:
        """Latch Unsloth's precision as its pass would (its loss reads it), and whether the Step's autocast is it."""
        if self.latch is None:
            return True
        enabled, dtype = self.latch(self.trainer)
        step = self.step
        ours = step.head.is_cuda and step.dtype is not None
        return enabled == ours and (not enabled or dtype == step.dtype)

    def score(self, model, input_ids, attention_mask, width: int):
        """The log-probs in the replaced pass's layout and None, or None and why they cannot stand."""
        pad_id = self.trainer.processing_class.pad_token_id
        prompt_ids, completion_ids = input_ids[:, :-width], input_ids[:, -width:]
        prompt_mask, completion_mask = attention_mask[:, :-width], attention_mask[:, -width:]
        rows = graphed_step.layout(
            prompt_ids,
            prompt_mask,
            completion_ids,
            completion_mask,
            pad_id,
            self.step.row_length(input_ids.size(1)),
        )
        rows["mask"] = graphed_step.loss_mask(completion_ids, completion_mask, pad_id, self.step.unsloth)
        if self.step.capture:
            rows = graphed_step.padded(rows, self.trainer.max_completion_length)
        self.key = (self.role(model), model.training, *rows["input_ids"].shape)
        if self.key in self.distrusted:
            return None, f"the {self.key[0]}'s {self.key[-1]}-token rows failed an audit"
        fresh = self.step.capture and self.key not in self.step.scoring_graphs
        if fresh and self.step.unsloth and not bool(packing_agrees(input_ids, attention_mask, pad_id)):
            return None, "a pad-id token inside a row, which Unsloth's packing drops"  # checked before a capture
        try:
            logps, finite = self.run(model, rows, width)
        except RuntimeError as error:  # out of memory, or a kernel a capture cannot hold: not this call's rows
            if not self.step.capture:
                raise
            self.distrusted.add(self.key)
            self.drop(self.key)
            torch.cuda.empty_cache()
            return None, f"its graph failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
        left_pad = (prompt_ids == pad_id).sum(1)  # as Unsloth counts it (calculate_pad_tokens_in_prompt)
        agrees = packing_agrees(input_ids, attention_mask, pad_id) if self.step.unsloth else torch.tensor(True)
        checks = torch.stack([finite.long(), agrees.to(finite.device).long(), left_pad.max()])
        finite, agrees, max_left_pad = checks.tolist()  # the call's one host read
        if not agrees:
            return None, "a pad-id token inside a row, which Unsloth's packing drops"
        if not finite:
            self.drop(self.key)
            return None, "a log-prob that is not finite"
        return (unsloth_columns(logps, left_pad, max_left_pad) if self.step.unsloth else logps), None

    def role(self, model) -> str:
        """Which forward this is, as a graph bakes it in: the base model (Unsloth's reference, under
        disable_adapter()) or the model with its active adapter (the policy; TRL's reference "ref" adapter)."""
        peft = self.trainer.accelerator.unwrap_model(model)
        return "base" if adapters_disabled(peft) else f"adapter {peft.active_adapter}"

    def run(self, model, rows: dict, width: int):
        """The masked log-probs [rows, width] and whether they are finite: replayed from this call's graph
        (captured on first use), or computed eagerly. Copied out: the next replay rewrites them."""
        step = self.step
        if not step.capture:
            return self.compute(model, rows)
        if self.key not in step.scoring_graphs:
            step.scoring_graphs[self.key] = step.record(self.compute, model, rows)
            print(f"graphed_scoring: captured the {self.key[0]}'s scoring of {self.key[-1]}-token rows", flush=True)
        graph, static, (logps, finite), _ = step.scoring_graphs[self.key]
        for name, value in rows.items():
            static[name].copy_(value)
        graph.replay()
        return logps[:, :width].clone(), finite.clone()

    def compute(self, model, rows):
        with torch.no_grad(), self.step.autocast():
            hidden = self.step.hidden(model, rows)
            logps = graphed_step.completion_logps(
                hidden, self.step.head, rows["predictor"], rows["targets"], self.trainer.temperature
            )
        logps = torch.where(rows["mask"].bool(), logps, torch.zeros_like(logps))
        return logps, torch.isfinite(logps).all()

    def drop(self, key: tuple):
        """Forget the graph that gave a log-prob that is not finite, failed an audit or failed, to be captured anew: it
        may have read memory no longer its own. Where the weights were at fault instead, recapturing costs a
        second and the pass it falls back to gives the loss the same non-finite values, which the Step then
        declines to apply."""
        self.uses.pop(key, None)  # a graph captured anew is audited anew
        if self.step.scoring_graphs.pop(key, None) is not None:
            self.step.release_pool()

    def fall_back(self, why: str, *args, **kwargs):
        """The replaced pass, saying why: every time for a log-prob that is not finite, once for other reasons."""
        self.fell_back += 1
        if why not in self.said or "finite" in why:
            self.said.add(why)
            print(f"graphed_scoring: the trainer's own scoring pass ({why})", flush=True)
        return self.original(*args, **kwargs)


def lora_layers(model) -> list | None:
    """The LoRA layers that PEFT's disable_adapter() toggles, or None where it does more than toggle them (prompt
    learning, modules_to_save or trainable tokens, a trained bias) or the model is not a PEFT model."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    config = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", None))
    if config is None or config.is_prompt_learning or getattr(config, "bias", "none") != "none":
        return None
    layers = [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]
    return layers if layers and all(isinstance(m, LoraLayer) for m in layers) else None


def quick_disable_adapter(model, layers: list):
    """PeftModel.disable_adapter() on ``layers`` listed once, through the same enable_adapters() calls. PEFT's
    walks every module twice and, for get_model_status(), repr()s every LoRA layer: once a generation, for the
    reference's log-probs, where a replayed graph reads none of it (role() reads _adapters_disabled). Each layer
    gets back its own state, where PEFT's turns every one on. Nothing on this path adds or replaces a LoRA layer
    after build_trainer (a resume loads weights in place); a layer added later would stay on here."""

    @contextlib.contextmanager
    def disable_adapter():
        was, states = model._adapters_disabled, [layer.disable_adapters for layer in layers]
        try:
            for layer in layers:
                layer.enable_adapters(False)
            model._adapters_disabled = True
            yield
        finally:
            for layer, disabled in zip(layers, states):
                if not disabled:
                    layer.enable_adapters(True)
            model._adapters_disabled = was

    return disable_adapter


def install(trainer) -> str | None:
    """Route the trainer's scoring through Scoring, where graphed_step.install put its Step, and the reference's
    disable_adapter() through quick_disable_adapter where the model allows; why not, when it declines."""
    why = declines(trainer)
    if why is None:
        trainer._get_per_token_logps_and_entropies = Scoring(trainer, trainer._get_per_token_logps_and_entropies)
        model = trainer.accelerator.unwrap_model(trainer.model)
        layers = lora_layers(model)
        if layers is not None:
            model.disable_adapter = quick_disable_adapter(model, layers)
    return why


def describe(trainer) -> str:
    if trainer.training_step.capture:
        return "recipe/graphed_scoring.py, a CUDA graph per row length for the policy and for the reference"
    return "recipe/graphed_scoring.py's fixed shapes, without CUDA graphs (no CUDA device)"
