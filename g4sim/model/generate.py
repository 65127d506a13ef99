"""Decode loop over g4sim's model and cache: greedy or temperature / top-k sampling."""

from __future__ import annotations

import torch


@torch.no_grad()
def generate(model, prompt_ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
             prefill_chunk: int | None = None, eos_token_id: int | None = None, seed: int = 0) -> torch.Tensor:
    """Prompt followed by up to ``max_new_tokens`` tokens ([batch, prompt + new])."""
    batch, n = prompt_ids.shape
    cache = model.new_cache(batch, n + max_new_tokens)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    logits = model(prompt_ids, cache=cache, prefill_chunk=prefill_chunk)[:, -1]
    out = [prompt_ids]
    for step in range(max_new_tokens):
        if temperature > 0:
            scaled = logits / temperature
            if top_k:
                kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            probs = torch.softmax(scaled, dim=-1).cpu()
            token = torch.multinomial(probs, 1, generator=generator).to(prompt_ids.device)
        else:
            token = logits.argmax(-1, keepdim=True)
        out.append(token)
        if eos_token_id is not None and bool((token == eos_token_id).all()):
            break
        if step + 1 < max_new_tokens:
            logits = model(token, cache=cache, start=n + step)[:, -1]
    return torch.cat(out, dim=1)
