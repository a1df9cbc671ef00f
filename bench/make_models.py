#!/usr/bin/python3
"""bench/make_models.py: export the benchmark models to ONNX with PyTorch.

Run with Debian's Python (python3-torch 1.13, python3-torchvision 0.14; see
scripts/install-peers.sh):

    /usr/bin/python3 bench/make_models.py [--out DIR] [--opsets 13,17] [MODEL...]

MODEL is any of resnet50, mobilenet_v2, bert, mlp (default: all). Writes
DIR/NAME-opsetK.onnx (DIR defaults to build/bench-models, which git ignores; the models
are not committed). Weights are random (fixed seeds, no downloads), which is all a speed
benchmark needs (the CNNs' BatchNorm statistics are measured on random images, so that the
outputs have a sensible scale for the kiln-vs-ORT check); every model is in eval mode with a fixed batch of 1, so all shapes are
static. Running it twice gives byte-identical files.

  resnet50      torchvision ResNet-50,      input "input" float32[1,3,224,224], output "output" [1,1000]
  mobilenet_v2  torchvision MobileNetV2,    input "input" float32[1,3,224,224], output "output" [1,1000]
  bert          BERT-base-like encoder (12 layers, hidden 768, 12 heads, FFN 3072, GELU,
                post-LayerNorm, vocab 30522), input "input_ids" int64[1,128],
                outputs "last_hidden_state" [1,128,768] and "pooler_output" [1,768].
                Written layer by layer, so the graph has MatMul, Softmax, Erf and
                LayerNormalization (opset 17; at opset 13 LayerNorm is decomposed into
                ReduceMean/Sub/Pow/Sqrt/Div).
  mlp           784-512-512-10 MLP with ReLU, input "input" float32[1,784], output "output" [1,10]
"""

import argparse
import math
import os
import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20261125


class SelfAttention(nn.Module):
    def __init__(self, hidden, heads, seq):
        super().__init__()
        self.heads, self.head_dim, self.seq = heads, hidden // heads, seq
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def split(self, x):  # [1, S, H*D] -> [1, H, S, D]
        return x.reshape(1, self.seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        ctx = ctx.transpose(1, 2).reshape(1, self.seq, self.heads * self.head_dim)
        return self.out(ctx)


class EncoderLayer(nn.Module):
    def __init__(self, hidden, heads, ffn, seq):
        super().__init__()
        self.attn = SelfAttention(hidden, heads, seq)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ff1 = nn.Linear(hidden, ffn)
        self.ff2 = nn.Linear(ffn, hidden)
        self.act = nn.GELU()
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ff2(self.act(self.ff1(x))))


class Bert(nn.Module):
    """BERT-base shapes: token, position and token-type embeddings, 12 post-LN layers, pooler."""

    def __init__(self, vocab=30522, hidden=768, heads=12, layers=12, ffn=3072, seq=128, max_pos=512):
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_pos, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, seq) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)
        self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0), persistent=False)
        self.register_buffer("type_ids", torch.zeros(1, seq, dtype=torch.long), persistent=False)

    def forward(self, input_ids):
        x = self.word(input_ids) + self.position(self.position_ids) + self.token_type(self.type_ids)
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x)
        return x, torch.tanh(self.pool(x[:, 0]))


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def torchvision_model(name):
    """A torchvision model with random weights and BatchNorm statistics measured on random
    images, so that activations keep a sensible scale through the network (with the initial
    statistics, mean 0 and variance 1, MobileNetV2's outputs shrink to about 1e-9 and
    ResNet-50's grow to about 30, which would make the kiln-vs-ORT check meaningless)."""
    import torchvision  # python3-torchvision; imported here so the other models need only torch

    model = getattr(torchvision.models, name)(weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, 3, 224, 224) * 2 - 1)
    return model


# name -> (builder, example input, input names, output names)
MODELS = {
    "resnet50": (lambda: torchvision_model("resnet50"), lambda: torch.randn(1, 3, 224, 224), ["input"], ["output"]),
    "mobilenet_v2": (lambda: torchvision_model("mobilenet_v2"), lambda: torch.randn(1, 3, 224, 224), ["input"], ["output"]),
    "bert": (Bert, lambda: torch.randint(0, 30522, (1, 128)), ["input_ids"], ["last_hidden_state", "pooler_output"]),
    "mlp": (mlp, lambda: torch.randn(1, 784), ["input"], ["output"]),
}


def export(name, opset, out_dir):
    build, example, inputs, outputs = MODELS[name]
    torch.manual_seed(SEED)
    model = build().eval()
    x = example()
    path = os.path.join(out_dir, f"{name}-opset{opset}.onnx")
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, (x,), tmp, opset_version=opset, input_names=inputs,
                          output_names=outputs, do_constant_folding=True)
    os.replace(tmp, path)
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {params / 1e6:.1f} M parameters, {os.path.getsize(path) / 2**20:.1f} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", metavar="MODEL", help="any of " + ", ".join(MODELS) + " (default: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-models"))
    ap.add_argument("--opsets", default="13,17", help="comma-separated opsets (torch 1.13: at most 17)")
    args = ap.parse_args()
    for name in args.models:
        if name not in MODELS:
            ap.error(f"unknown model '{name}'; the models are {', '.join(MODELS)}")
    opsets = [int(o) for o in args.opsets.split(",")]
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.models or list(MODELS):
        for opset in opsets:
            export(name, opset, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
