"""Batched completions with plain transformers, for evaluation (greedy) and the offline jobs' checks (sampled)."""

from __future__ import annotations

Completion = tuple[str, int]  # (text, generated tokens including the stop token)


def hf_complete(
    model,
    tokenizer,
    texts: list[str],
    max_new_tokens: int,
    stop_ids: list[int],
    batch_size: int,
    desc: str = "",
    temperature: float = 0.0,
) -> list[Completion]:
    """Completions of rendered prompts, batched with left padding: greedy at temperature 0, else sampled."""
    import torch
    from tqdm.auto import tqdm

    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    completions: list[Completion] = []
    with tqdm(total=len(texts), desc=desc, dynamic_ncols=True, disable=len(texts) <= batch_size) as bar:
        for start in range(0, len(texts), batch_size):
            # Left padding: generation appends on the right, so padding must not sit there.
            chunk = texts[start : start + batch_size]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            batch = batch.to(model.device)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling,
                )
            for row in out[:, batch["input_ids"].shape[1] :].tolist():
                # Rows that stopped early are padded with the pad token, which may equal EOS: keep up to the first stop.
                length = next((i + 1 for i, token in enumerate(row) if token in stop_ids), len(row))
                completions.append((tokenizer.decode(row[:length], skip_special_tokens=True), length))
            bar.update(len(batch["input_ids"]))
    return completions
