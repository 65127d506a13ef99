"""Build a random-weight Gemma-4-E2B-shaped checkpoint (reduced depth/vocab) + a minimal tokenizer, offline."""
import json, sys, os
import torch, transformers

src = os.environ.get("E2B_CONFIG", "tests/data/configs/e2b/config.json")  # measure.sh sets it
out = sys.argv[1]
n_layers = int(sys.argv[2]) if len(sys.argv) > 2 else 10
n_shared = int(sys.argv[3]) if len(sys.argv) > 3 else 5
vocab = int(sys.argv[4]) if len(sys.argv) > 4 else 32768
os.makedirs(out, exist_ok=True)
cfg = json.load(open(src))
tc = cfg["text_config"]
tc["num_hidden_layers"] = n_layers
tc["layer_types"] = tc["layer_types"][:n_layers]
tc["num_kv_shared_layers"] = n_shared
tc["per_layer_config"] = {k: v for k, v in tc["per_layer_config"].items() if int(k) < n_layers}
tc["vocab_size"] = vocab
tc["vocab_size_per_layer_input"] = vocab
# multimodal special ids must lie inside the reduced vocabulary
top = vocab
for i, k in enumerate(["boa_token_id", "boi_token_id", "audio_token_id", "eoi_token_id", "eoa_token_index",
                       "image_token_id", "video_token_id"]):
    cfg[k] = top - 16 + i
cfg["architectures"] = ["Gemma4ForConditionalGeneration"]
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
config = transformers.AutoConfig.from_pretrained(out)
torch.manual_seed(0)
model = transformers.Gemma4ForConditionalGeneration(config).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
t = config.text_config
print("layers", t.num_hidden_layers, "shared", t.num_kv_shared_layers, "types", t.layer_types)
print("params", sum(p.numel() for p in model.parameters()))
print("text params", sum(p.numel() for n, p in model.named_parameters() if "language_model" in n or "lm_head" in n))

# --- minimal tokenizer: WordLevel over `vocab` ids, Gemma-style specials at their real ids ---
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
specials = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "<|turn>": 105, "<turn|>": 106,
            "<start_of_turn>": 107, "<end_of_turn>": 108}
mm = {"<|audio>": cfg["boa_token_id"], "<|image>": cfg["boi_token_id"], "<|audio|>": cfg["audio_token_id"],
      "<image|>": cfg["eoi_token_id"], "<audio|>": cfg["eoa_token_index"], "<|image|>": cfg["image_token_id"],
      "<|video|>": cfg["video_token_id"]}
specials.update(mm)
v = dict(specials)
inv = {i for i in v.values()}
w = 0
for i in range(vocab):
    if i not in inv:
        v[f"w{w}"] = i; w += 1
tok = Tokenizer(models.WordLevel(vocab=v, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.decoder = decoders.WordPiece(prefix="##")
tok.add_special_tokens(list(specials))
fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                            pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                            additional_special_tokens=[k for k in specials if k not in
                                                                       ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")])
fast.chat_template = ("{{ bos_token }}{% for m in messages %}<|turn>{{ m['role'] }}\n{{ m['content'] }}<turn|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|turn>model\n{% endif %}")
fast.save_pretrained(out)
print("tokenizer vocab", len(fast))
