"""g4sim's model equals transformers' Gemma 4 on the same weights: prefill, chunked prefill, cached decode.

Small random configs exercise every mechanism; sliding windows of 8 make cached decode wrap the
ring buffer several times.  Tolerance 1e-4 on fp32 logits.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import hf_text_config  # noqa: E402
from g4sim.model import Gemma4ForCausalLM  # noqa: E402
from g4sim.spec import FULL, SLIDING, TextSpec  # noqa: E402

S, F = SLIDING, FULL
CONFIGS = {
    # E2B-like: PLE, KV sharing (last 5 layers), double-wide MLP, 1 KV head, 4S1F pattern
    "e2b-like": TextSpec(hidden_size=64, num_layers=10, layer_types=(S, S, S, S, F) * 2, sliding_window=8,
                         num_heads=4, num_kv_heads=1, num_global_kv_heads=None, head_dim=16, global_head_dim=32,
                         attention_k_eq_v=False, num_kv_shared_layers=5, intermediate_size=96,
                         use_double_wide_mlp=True, vocab_size=320, hidden_size_per_layer_input=8,
                         vocab_size_per_layer_input=320),
    # 26B-like: MoE (16 experts, top-4) beside a dense branch, k_eq_v full layers with 1 global KV head
    "26b-like": TextSpec(hidden_size=64, num_layers=6, layer_types=(S, S, F) * 2, sliding_window=8, num_heads=4,
                         num_kv_heads=2, num_global_kv_heads=1, head_dim=16, global_head_dim=32,
                         attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=48,
                         use_double_wide_mlp=False, vocab_size=320, enable_moe_block=True, num_experts=16,
                         top_k_experts=4, moe_intermediate_size=24),
    # 31B-like: dense, k_eq_v, 5S1F
    "31b-like": TextSpec(hidden_size=64, num_layers=6, layer_types=(S, S, S, S, S, F), sliding_window=8,
                         num_heads=8, num_kv_heads=4, num_global_kv_heads=2, head_dim=16, global_head_dim=32,
                         attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=128,
                         use_double_wide_mlp=False, vocab_size=320),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    spec = CONFIGS[request.param]
    torch.manual_seed(0)
    ref = transformers.Gemma4ForCausalLM(hf_text_config(spec)).eval()
    with torch.no_grad():  # random, non-trivial weights everywhere (norm scales too)
        for name, p in ref.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.08) + (1.0 if p.ndim == 1 else 0.0))
        for layer in ref.model.layers:
            layer.layer_scalar.fill_(0.9)
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)  # the independent checkpoint writer
    return spec, ref, Gemma4ForCausalLM.from_pretrained(path)


def _ids(spec, n, batch=2, seed=1):
    return torch.randint(0, spec.vocab_size, (batch, n), generator=torch.Generator().manual_seed(seed))


def test_prefill_logits_equal_reference(pair):
    spec, ref, ours = pair
    ids = _ids(spec, 29)
    with torch.no_grad():
        expected = ref(ids).logits
    got = ours(ids, logits_to_keep=None)
    assert expected.std() > 0.1  # the comparison is not between two flat outputs
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk", [1, 5, 8, 13])
def test_chunked_prefill_equals_reference(pair, chunk):
    spec, ref, ours = pair
    ids = _ids(spec, 29)
    with torch.no_grad():
        expected = ref(ids).logits[:, -3:]
    torch.testing.assert_close(ours(ids, logits_to_keep=3, prefill_chunk=chunk), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch", [2, 1])  # batch 1: one token per decode step (the MoE block's one-token path)
def test_cached_decode_past_the_window_equals_reference(pair, batch):
    """Prefill 11 tokens, then 40 cached steps: the 8-slot ring buffer wraps five times."""
    spec, ref, ours = pair
    ids = _ids(spec, 51, batch=batch)
    prompt, steps = 11, 40
    with torch.no_grad():
        out = ref(ids[:, :prompt], use_cache=True)
        past, ref_logits = out.past_key_values, [out.logits[:, -1]]
        for i in range(prompt, prompt + steps):
            out = ref(ids[:, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            ref_logits.append(out.logits[:, -1])
    cache = ours.new_cache(batch, prompt + steps)
    got = [ours(ids[:, :prompt], cache=cache)[:, -1]]
    for i in range(prompt, prompt + steps):
        got.append(ours(ids[:, i:i + 1], cache=cache, start=i)[:, -1])
    torch.testing.assert_close(torch.stack(got), torch.stack(ref_logits), atol=1e-4, rtol=0)


def test_greedy_generation_matches_reference(pair):
    from g4sim.model.generate import generate

    spec, ref, ours = pair
    prompt = _ids(spec, 6, batch=1)
    with torch.no_grad():
        expected = ref.generate(prompt, max_new_tokens=20, do_sample=False, min_new_tokens=20)
    got = generate(ours, prompt, max_new_tokens=20)
    assert got.tolist() == expected.tolist()


def test_generate_command_prints_the_reference_tokens(pair, tmp_path, capsys):
    from g4sim.cli import main

    spec, ref, ours = pair
    ref.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = ref.generate(torch.tensor([[3, 14, 15]]), max_new_tokens=5, do_sample=False, min_new_tokens=5)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--checkpoint", str(tmp_path), "--prompt-ids", "3,14,15", "--max-new-tokens", "5"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == ",".join(map(str, expected[0, 3:].tolist()))


@pytest.mark.parametrize("heads,kv_heads,keys", [(8, 1, 513), (16, 8, 2500), (4, 2, 1024)])
def test_decode_attention_equals_the_flash_kernel(heads, kv_heads, keys):
    """The decode path (fp32 scores over blocks of keys, GQA without expanding K/V) against torch's own
    scaled_dot_product_attention in fp32 on the same bf16 inputs; 2500 keys cross DECODE_KEY_BLOCK twice."""
    import torch.nn.functional as F

    from g4sim.model.model import DECODE_KEY_BLOCK, decode_attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, heads, 1, 64, generator=g).to(torch.bfloat16)
    k, v = (torch.randn(2, kv_heads, keys, 64, generator=g).to(torch.bfloat16) for _ in range(2))
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=1.0, enable_gqa=True)
    got = decode_attention(q, k, v)
    assert got.dtype == torch.bfloat16 and (keys > DECODE_KEY_BLOCK) == (keys == 2500)
    torch.testing.assert_close(got.float(), want, rtol=0, atol=2 ** -7)  # one bf16 rounding of values below 1
