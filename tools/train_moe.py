#!/usr/bin/env python3
"""Train the example MoE models that qmoe ships in examples/models/.

This is the only Python in the project.  Nothing in the build, the tests or the
qmoe command needs it; it exists so that anyone can retrain the examples from
the texts in ../shared/data/corpora and get the same weights (fixed seeds,
fixed step counts, one thread).

The models follow the Hugging Face definitions of their architectures exactly
(modeling_mixtral.py, DeepSeek-MoE's modeling_deepseek.py, modeling_qwen3_moe.py):

  decoder layer   h = x + attn(rmsnorm(x));  out = h + ffn(rmsnorm(h))
  rmsnorm         x * rsqrt(mean(x^2) + eps) * w            (in fp32)
  attention       q/k/v/o without bias, RoPE (rotate_half, base rope_theta),
                  grouped-query by repeating k/v heads, causal softmax;
                  Qwen3 applies an RMSNorm of size head_dim to each head of
                  q and k before RoPE, and head_dim is its own config key
  router          softmax over all experts (fp32), top-k,
                  Mixtral and Qwen3 (norm_topk_prob) renormalise the k
                  weights, DeepSeek does not
  expert          down(silu(gate(x)) * up(x))
  shared experts  one MLP of width n_shared * moe_intermediate_size, added
  dense layers    the first `first_k_dense_replace` DeepSeek layers

Tokens are bytes (vocabulary 256, no special tokens); config.json declares
this with "qmoe_tokenizer": "byte" for the C side.

Usage:
  python3 tools/train_moe.py --arch mixtral  --out examples/models/tiny-mixtral
  python3 tools/train_moe.py --arch deepseek --out examples/models/tiny-deepseek
  python3 tools/train_moe.py --arch qwen3moe --out examples/models/tiny-qwen3moe \
      --state /tmp/qwen3moe.state.pt
  python3 tools/train_moe.py --arch mixtral --out DIR --golden-only
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CORPORA = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "..", "..", "shared", "data", "corpora")

CONFIGS = {
    "mixtral": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": 256,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "router_aux_loss_coef": 0.02,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
        "sliding_window": None,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "bfloat16",
        "qmoe_tokenizer": "byte",
    },
    "deepseek": {
        "architectures": ["DeepseekForCausalLM"],
        "model_type": "deepseek",
        "vocab_size": 256,
        "hidden_size": 128,
        "intermediate_size": 512,
        "moe_intermediate_size": 64,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_routed_experts": 16,
        "n_shared_experts": 2,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "norm_topk_prob": False,
        "scoring_func": "softmax",
        "aux_loss_alpha": 0.01,
        "seq_aux": True,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "bfloat16",
        "qmoe_tokenizer": "byte",
    },
    # Real proportions (issue #20): experts are 94% of the quantizable
    # weights and every linear's input width is a multiple of 256, so
    # llama.cpp's k-quants apply to all of them.
    "qwen3moe": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": 256,
        "hidden_size": 256,
        "intermediate_size": 768,
        "moe_intermediate_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "num_experts": 16,
        "num_experts_per_tok": 2,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "router_aux_loss_coef": 0.01,
        "output_router_logits": False,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "bfloat16",
        "qmoe_tokenizer": "byte",
    },
}


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


# ---------------------------------------------------------------- the model

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(head_dim, n, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    t = torch.arange(n, dtype=torch.int64).float()
    freqs = torch.outer(t, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.nkv = c["num_key_value_heads"]
        self.hd = head_dim(c)
        self.qk_norm = c["model_type"] == "qwen3_moe"
        if self.qk_norm:
            self.q_norm = RMSNorm(self.hd, c["rms_norm_eps"])
            self.k_norm = RMSNorm(self.hd, c["rms_norm_eps"])
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.hd)
        k = self.k_proj(x).view(b, t, self.nkv, self.hd)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.hd).transpose(1, 2)
        cos, sin = cos[:t], sin[:t]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        # Scaling q rather than the scores is the same softmax input at a
        # fraction of the cost (the score matrix is t x t per head).
        s = (q * (1.0 / math.sqrt(self.hd))) @ k.transpose(2, 3)
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        y = F.softmax(s, dim=-1, dtype=torch.float).to(q.dtype) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.nh * self.hd))


class MLP(nn.Module):
    """SwiGLU with DeepSeek's names (gate_proj, up_proj, down_proj)."""

    def __init__(self, d, width):
        super().__init__()
        self.gate_proj = nn.Linear(d, width, bias=False)
        self.up_proj = nn.Linear(d, width, bias=False)
        self.down_proj = nn.Linear(width, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MixtralExpert(nn.Module):
    """SwiGLU with Mixtral's names: w1 = gate, w3 = up, w2 = down."""

    def __init__(self, d, width):
        super().__init__()
        self.w1 = nn.Linear(d, width, bias=False)
        self.w2 = nn.Linear(width, d, bias=False)
        self.w3 = nn.Linear(d, width, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DeepseekGate(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d))

    def forward(self, x):
        return F.linear(x, self.weight)


def route(logits, k, renormalise):
    """Softmax in fp32 over all experts, then top-k (HF semantics)."""
    probs = F.softmax(logits, dim=-1, dtype=torch.float)
    w, idx = torch.topk(probs, k, dim=-1)
    if renormalise:
        w = w / w.sum(dim=-1, keepdim=True)
    return probs, w, idx


def run_experts(x, experts, w, idx):
    """Sum of w * expert(x) over each token's chosen experts, computed per expert."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        tok, slot = torch.nonzero(idx == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        y = expert(x[tok]) * w[tok, slot, None].to(x.dtype)
        out.index_add_(0, tok, y)
    return out


class SparseMoe(nn.Module):
    """Mixtral's block_sparse_moe, DeepSeek's or Qwen3's MoE mlp, by config."""

    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.deepseek = c["model_type"] == "deepseek"
        if self.deepseek:
            self.n = c["n_routed_experts"]
            self.gate = DeepseekGate(d, self.n)
            self.experts = nn.ModuleList(MLP(d, c["moe_intermediate_size"]) for _ in range(self.n))
            self.shared_experts = MLP(d, c["moe_intermediate_size"] * c["n_shared_experts"])
            self.renorm = c["norm_topk_prob"]
        elif c["model_type"] == "qwen3_moe":
            self.n = c["num_experts"]
            self.gate = nn.Linear(d, self.n, bias=False)
            self.experts = nn.ModuleList(MLP(d, c["moe_intermediate_size"]) for _ in range(self.n))
            self.renorm = c["norm_topk_prob"]
        else:
            self.n = c["num_local_experts"]
            self.gate = nn.Linear(d, self.n, bias=False)
            self.experts = nn.ModuleList(MixtralExpert(d, c["intermediate_size"]) for _ in range(self.n))
            self.renorm = True
        self.k = c["num_experts_per_tok"]
        self.last = None  # (probs, idx) of the last call, for the aux loss and load counts

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs, w, idx = route(self.gate(x), self.k, self.renorm)
        self.last = (probs, idx)
        y = run_experts(x, self.experts, w, idx)
        if self.deepseek:
            y = y + self.shared_experts(x)
        return y.view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, c, layer):
        super().__init__()
        d, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(d, eps)
        if c["model_type"] == "mixtral":
            self.block_sparse_moe = SparseMoe(c)
        elif c["model_type"] == "qwen3_moe":
            self.mlp = SparseMoe(c)
        elif layer < c["first_k_dense_replace"]:
            self.mlp = MLP(d, c["intermediate_size"])
        else:
            self.mlp = SparseMoe(c)

    @property
    def ffn(self):
        return self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.ffn(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c, i) for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class CausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Backbone(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        hd = head_dim(c)
        cos, sin = rope_tables(hd, c["max_position_embeddings"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                continue
            nn.init.normal_(p, std=0.02)

    def moe_blocks(self):
        return [(i, l.ffn) for i, l in enumerate(self.model.layers) if isinstance(l.ffn, SparseMoe)]

    def forward(self, tokens):
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, self.cos, self.sin)
        return self.lm_head(self.model.norm(x))


def aux_loss(model):
    """Switch/Mixtral load-balancing loss, averaged over MoE blocks.

    Qwen3 gets transformers' load_balancing_loss_func exactly: the router
    outputs of all layers concatenated, tokens_per_expert of shape
    [top_k, experts] summed over both, times the expert count (k times the
    per-slot form, and the layers pooled rather than averaged)."""
    if model.c["model_type"] == "qwen3_moe":
        blocks = model.moe_blocks()
        probs = torch.cat([moe.last[0] for _, moe in blocks])
        idx = torch.cat([moe.last[1] for _, moe in blocks])
        n = blocks[0][1].n
        tokens_per_expert = F.one_hot(idx, n).float().mean(dim=0)
        return n * (tokens_per_expert * probs.mean(dim=0)[None]).sum()
    total = 0.0
    blocks = model.moe_blocks()
    for _, moe in blocks:
        probs, idx = moe.last
        load = F.one_hot(idx, moe.n).float().mean(dim=(0, 1))
        total = total + moe.n * (load * probs.mean(dim=0)).sum()
    return total / len(blocks)


# ---------------------------------------------------------------- data

def read_bytes(*parts):
    with open(os.path.join(CORPORA, *parts), "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


def load_corpora():
    """Training texts, their held-out tails (5%), and the evaluation text."""
    kjv = read_bytes("kjv", "kjv.txt")
    shk = read_bytes("tinyshakespeare", "input.txt")
    wik = read_bytes("wikitext-2", "valid.txt")
    test = read_bytes("wikitext-2", "test.txt")
    kcut, scut = int(len(kjv) * 0.95), int(len(shk) * 0.95)
    train = {"kjv": kjv[:kcut], "shakespeare": shk[:scut], "wikitext2-valid": wik}
    held = {"kjv-tail": kjv[kcut:], "shakespeare-tail": shk[scut:], "wikitext2-test": test}
    return train, held


DOMAIN_WEIGHTS = {"kjv": 0.3, "shakespeare": 0.3, "wikitext2-valid": 0.4}


def sample_batch(rng, train, batch, ctx):
    names = list(DOMAIN_WEIGHTS)
    p = np.array([DOMAIN_WEIGHTS[n] for n in names])
    rows = []
    for _ in range(batch):
        text = train[names[rng.choice(len(names), p=p)]]
        off = rng.integers(0, len(text) - ctx - 1)
        rows.append(text[off:off + ctx + 1])
    t = torch.from_numpy(np.stack(rows).astype(np.int64))
    return t[:, :-1], t[:, 1:]


# ---------------------------------------------------------------- safetensors

def save_safetensors(path, tensors, metadata):
    """Write tensors (name -> torch tensor) in our own code: header, then data.

    BF16 for floating weights; the header is padded with spaces to 8 bytes.
    Written to a temp file and renamed so a killed run leaves no half file.
    """
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            raw, dt = t.view(torch.int16).numpy().tobytes(), "BF16"
        elif t.dtype == torch.float32:
            raw, dt = t.numpy().astype("<f4").tobytes(), "F32"
        elif t.dtype == torch.int32:
            raw, dt = t.numpy().astype("<i4").tobytes(), "I32"
        else:
            raise ValueError(f"{name}: dtype {t.dtype} not handled")
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def bf16_state(model):
    return {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}


def load_bf16_into(model, state):
    """Replace the weights by their BF16 values (in fp32) so evaluation and
    golden logits describe exactly the shipped checkpoint."""
    model.load_state_dict({k: v.float() for k, v in state.items()})


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def bits_per_byte(model, text, ctx, limit=None):
    """Mean cross-entropy in bits over non-overlapping windows of ctx+1 bytes:
    each window predicts its bytes 1..ctx from the bytes before them."""
    model.eval()
    data = text if limit is None else text[:limit]
    n = (len(data) - 1) // ctx
    total, count = 0.0, 0
    for s in range(0, n, 2):
        rows = [data[i * ctx:i * ctx + ctx + 1] for i in range(s, min(n, s + 2))]
        t = torch.from_numpy(np.stack(rows).astype(np.int64))
        logits = model(t[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, 256), t[:, 1:].reshape(-1), reduction="sum").item()
        count += t[:, 1:].numel()
    model.train()
    return total / count / math.log(2)


@torch.no_grad()
def expert_load(model, text, ctx, limit):
    """Fraction of top-k selections each expert receives, per MoE layer."""
    model.eval()
    counts = {i: torch.zeros(moe.n) for i, moe in model.moe_blocks()}
    data = text[:limit]
    n = (len(data) - 1) // ctx
    for i in range(n):
        t = torch.from_numpy(data[i * ctx:i * ctx + ctx].astype(np.int64))[None]
        model(t)
        for li, moe in model.moe_blocks():
            counts[li] += torch.bincount(moe.last[1].reshape(-1), minlength=moe.n).float()
    model.train()
    return {li: (c / c.sum()).tolist() for li, c in counts.items()}


def yaml_list(xs, fmt="{:.4f}"):
    return "[" + ", ".join(fmt.format(x) for x in xs) + "]"


def write_train_log(path, cfg, args, losses, evals, loads, seconds, tokens):
    lines = [
        "# Written by tools/train_moe.py; bits per byte = mean cross-entropy in bits,",
        "# windows of %d bytes, non-overlapping, each byte after the first scored once." % args.ctx,
        "architecture: %s" % cfg["architectures"][0],
        "command: %s" % json.dumps(" ".join(["python3", "tools/train_moe.py"] + sys.argv[1:])),
        "seed: %d" % args.seed,
        "threads: %d" % args.threads,
        "steps: %d" % args.steps,
        "batch: %d  # sequences per micro-batch" % args.batch,
        "accum: %d  # micro-batches per optimizer step" % args.accum,
        "ctx: %d" % args.ctx,
        "tokens_trained: %d" % tokens,
        "train_seconds: %.0f" % seconds,
        "domain_weights: {%s}" % ", ".join("%s: %.2f" % kv for kv in DOMAIN_WEIGHTS.items()),
        "loss_curve:  # [step, mean training cross-entropy in bits per byte over the last interval]",
    ]
    lines += ["  - [%d, %.4f]" % (s, l) for s, l in losses]
    lines.append("bits_per_byte:")
    lines += ["  %s: %.4f" % kv for kv in evals.items()]
    lines.append("expert_load:  # per domain, per MoE layer: fraction of top-k selections per expert")
    for dom, per_layer in loads.items():
        lines.append("  %s:" % dom)
        lines += ["    %d: %s" % (li, yaml_list(v)) for li, v in per_layer.items()]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def write_golden(model, out, test):
    """Logits at every position of the first 512 bytes of WikiText-2 test."""
    model.eval()
    tokens = torch.from_numpy(test[:512].astype(np.int64))[None]
    with torch.no_grad():
        logits = model(tokens)[0].float()
    save_safetensors(os.path.join(out, "golden.safetensors"),
                     {"tokens": tokens[0].to(torch.int32), "logits": logits},
                     {"text": "first 512 bytes of wikitext-2 test.txt",
                      "produced_by": "tools/train_moe.py (PyTorch, fp32 math on the BF16 weights)"})


def write_loss_svg(out):
    """loss_curve.svg beside train_log.yaml: training bits per byte against
    step, with the held-out bits per byte as dashed lines.  Read from the
    log so that a finished run's curve can be drawn again (--svg-only)."""
    import re
    text = open(os.path.join(out, "train_log.yaml")).read()
    pts = [(int(a), float(b)) for a, b in re.findall(r"^  - \[(\d+), ([0-9.]+)\]$", text, re.M)]
    held = re.findall(r"^  ([a-z0-9-]+): ([0-9.]+)$", text.split("bits_per_byte:")[1].split("expert_load:")[0], re.M)
    arch = re.search(r"^architecture: (\S+)", text, re.M).group(1)
    w, h, l, r, t, b = 640, 400, 60, 170, 30, 50
    xmax = max(s for s, _ in pts)
    ymin, ymax = 1.5, 4.0
    X = lambda s: l + (w - l - r) * s / xmax
    Y = lambda v: t + (h - t - b) * (ymax - min(max(v, ymin), ymax)) / (ymax - ymin)
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="18" font-size="14">%s: training loss (bits per byte)</text>' % (l, arch)]
    for v in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (l, w - r, Y(v), Y(v)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.1f</text>' % (l - 6, Y(v) + 4, v))
    for k in range(0, 5):
        s_ = xmax * k / 4
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (X(s_), h - b + 18, s_))
    o.append('<text x="%d" y="%d" text-anchor="middle">step</text>' % ((l + w - r) / 2, h - 12))
    o.append('<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>' %
             " ".join("%.1f,%.1f" % (X(s_), Y(v)) for s_, v in pts))
    colors = ["#d62728", "#2ca02c", "#9467bd"]
    for i, (name, v) in enumerate(held):
        c = colors[i % len(colors)]
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>' %
                 (l, w - r, Y(float(v)), Y(float(v)), c))
        o.append('<text x="%d" y="%.1f" fill="%s">%s %.3f</text>' % (w - r + 6, t + 16 * i + 10, c, name, float(v)))
    o.append('<text x="%d" y="%.1f" fill="#1f77b4">training</text>' % (w - r + 6, t + 16 * len(held) + 10))
    o.append("</svg>")
    with open(os.path.join(out, "loss_curve.svg.tmp"), "w") as f:
        f.write("\n".join(o) + "\n")
    os.replace(os.path.join(out, "loss_curve.svg.tmp"), os.path.join(out, "loss_curve.svg"))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-bytes", type=int, default=0,
                    help="evaluate on this many leading bytes of each held-out text (0: all)")
    ap.add_argument("--state", default=None,
                    help="where the resumable run state lives (default: OUT/train_state.pt); "
                         "keep it outside the repository")
    ap.add_argument("--svg-only", action="store_true",
                    help="draw loss_curve.svg again from OUT/train_log.yaml")
    ap.add_argument("--golden-only", action="store_true",
                    help="recompute golden.safetensors from the saved model.safetensors")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = CONFIGS[args.arch]
    os.makedirs(args.out, exist_ok=True)
    train, held = load_corpora()
    model = CausalLM(cfg)

    if args.svg_only:
        write_loss_svg(args.out)
        return
    if args.golden_only:
        state = load_safetensors_bf16(os.path.join(args.out, "model.safetensors"))
        load_bf16_into(model, state)
        write_golden(model, args.out, held["wikitext2-test"])
        return

    rng = np.random.default_rng(args.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    coef = cfg.get("router_aux_loss_coef", cfg.get("aux_loss_alpha"))
    warm = max(1, args.steps // 20)
    state_path = args.state or os.path.join(args.out, "train_state.pt")
    start, losses, acc, acc_n, spent = 0, [], 0.0, 0, 0.0
    if os.path.exists(state_path):  # resume an interrupted run
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        start, losses, spent = st["step"], st["losses"], st["seconds"]
        print("resuming at step %d" % start, flush=True)

    t0 = time.time()
    for step in range(start, args.steps):
        lr = args.lr * min(1.0, (step + 1) / warm)
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for _ in range(args.accum):  # small micro-batches keep the t x t scores in cache
            x, y = sample_batch(rng, train, args.batch, args.ctx)
            logits = model(x)
            ce = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
            loss = (ce + coef * aux_loss(model)) / args.accum
            loss.backward()
            acc += ce.item()
            acc_n += 1
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 25 == 0 or step + 1 == args.steps:
            bpb = acc / acc_n / math.log(2)
            losses.append((step + 1, bpb))
            el = spent + time.time() - t0
            print("step %d/%d  bpb %.3f  lr %.2e  %.0f tok/s" %
                  (step + 1, args.steps, bpb, lr, (step + 1 - start) * args.batch * args.accum * args.ctx / (time.time() - t0)),
                  flush=True)
            acc, acc_n = 0.0, 0
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(), "step": step + 1, "losses": losses, "seconds": el},
                       state_path + ".tmp")
            os.replace(state_path + ".tmp", state_path)
    seconds = spent + time.time() - t0

    state = bf16_state(model)
    load_bf16_into(model, state)
    limit = args.eval_bytes or None
    evals = {name: bits_per_byte(model, text, args.ctx, limit) for name, text in held.items()}
    print("bits per byte:", evals, flush=True)
    loads = {name: expert_load(model, text, args.ctx, limit or 65536) for name, text in held.items()}

    with open(os.path.join(args.out, "config.json.tmp"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(args.out, "config.json.tmp"), os.path.join(args.out, "config.json"))
    save_safetensors(os.path.join(args.out, "model.safetensors"), state, {"format": "pt"})
    write_golden(model, args.out, held["wikitext2-test"])
    write_train_log(os.path.join(args.out, "train_log.yaml"), cfg, args, losses, evals, loads,
                    seconds, args.steps * args.batch * args.accum * args.ctx)
    write_loss_svg(args.out)
    os.remove(state_path)


def load_safetensors_bf16(path):
    """Read back a file written by save_safetensors (BF16 tensors only)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        raw = torch.frombuffer(bytearray(data[b:e]), dtype=torch.int16)
        out[name] = raw.view(torch.bfloat16).reshape(h["shape"])
    return out


if __name__ == "__main__":
    main()
