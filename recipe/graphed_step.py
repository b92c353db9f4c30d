"""GRPO's training step at fixed shapes, the part of it that a CUDA graph can hold.

Work in progress (branch wip/graphed-step; not wired into the trainer). Measured on an H100, the default's
forward and backward took 0.16-0.21 s eager and 0.060 s as one replayed CUDA graph (bench/results/
train-step.md): the host's kernel launches are the training phase. A graph needs fixed shapes and no host
reads, so this lays one step's rows out at a fixed row length, left-aligned (prompt then completion, pads on
the right, which causal attention never reads), and computes the completion log-probs and GRPO's loss from
tensors alone. The loss is TRL 1.14.2's ``grpo`` (token-level ratios, no importance-sampling correction) with
Unsloth's clamps on the KL term (unsloth_zoo rl_replacements.grpo_compute_loss), which is what the GPU path
trains with today.
"""

from __future__ import annotations

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


def completion_logps(hidden, head_weight, predictor, targets, temperature: float):
    """Each completion token's log-prob under the policy, in fp32: the predicting hidden states through the
    LM head, divided by the sampling temperature as TRL divides them."""
    h = hidden.reshape(-1, hidden.size(-1)).index_select(0, predictor.reshape(-1))
    logits = (h @ head_weight.t()).float() / temperature
    logps = torch.log_softmax(logits, -1).gather(-1, targets.reshape(-1, 1)).squeeze(-1)
    return logps.view(targets.shape)


def grpo_loss(new, old, ref, advantages, mask, beta: float, eps_low: float, eps_high: float, bias_correction_kl: bool):
    """GRPO's ``grpo`` loss (each row's masked token mean, then the mean over rows) and its statistics
    [mean KL, low-clipped share, high-clipped share, clipped share], from tensors alone."""
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
        stats = torch.stack([(x * mask).sum() / total for x in (kl, low, high, torch.maximum(low, high))])
    return loss, stats
