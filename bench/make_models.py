#!/usr/bin/python3
"""bench/make_models.py: export the benchmark model set to ONNX with PyTorch.

Run with Debian's Python (python3-torch 1.13, python3-torchvision 0.14; see
scripts/install-peers.sh):

    /usr/bin/python3 bench/make_models.py [--out DIR] [--opsets 13,17] [MODEL...]
    /usr/bin/python3 bench/make_models.py --list | --table

MODEL is any of the names below (default: all). Writes DIR/NAME-opsetK.onnx (DIR defaults
to build/bench-models, which git ignores; the models are not committed) for each model's
opsets: 13 and 17 for the first four (the original set), 17 for the others; --opsets
overrides. Models with dynamic inputs also get DIR/NAME-opsetK.shapes, the concrete shapes
bench/make_refs.sh runs them with. --table prints docs/benchmarks.md's table of what is in
DIR (needs python3-onnx). Weights are random (fixed seeds, no downloads), which is all a
speed benchmark and the kiln-vs-ORT check need; BatchNorm statistics are measured on random
inputs (calibrate()), so that the outputs have a sensible scale. Every model is in eval
mode; shapes are static (batch 1) except where noted. Running it twice gives
byte-identical files. The whole set takes about 4 minutes on 2 cores and 2.7 GB of disk.

  resnet50         torchvision ResNet-50, input [1,3,224,224] -> output [1,1000]
  mobilenet_v2     torchvision MobileNetV2, same shapes
  efficientnet_b0  torchvision EfficientNet-B0 (SiLU, squeeze-excitation), same shapes
  densenet121      torchvision DenseNet-121 (Concat of every earlier layer), same shapes
  shufflenet_v2    torchvision ShuffleNetV2 x1.0 (channel shuffle: Reshape/Transpose), same shapes
  convnext_tiny    torchvision ConvNeXt-Tiny (7x7 depthwise, LayerNorm, GELU), same shapes
  vit_b_16         torchvision ViT-B/16 (patch Conv, 12 encoder layers), same shapes
  bert             BERT-base-like encoder (12 layers, hidden 768, 12 heads, FFN 3072, GELU,
                   post-LayerNorm, vocab 30522), input "input_ids" int64[1,128], outputs
                   "last_hidden_state" [1,128,768] and "pooler_output" [1,768]. Written
                   layer by layer: MatMul, Softmax, Erf and LayerNormalization (opset 17;
                   at opset 13 LayerNorm is decomposed into ReduceMean/Sub/Pow/Sqrt/Div)
  bert_dyn         the same encoder with dynamic batch and sequence length: input_ids
                   int64[batch,seq] (references at 2x64)
  gpt2             GPT-2-small-style decoder with a key/value cache (class GPT2): input_ids
                   int64[batch,seq] and 24 past_key_values.I.key/value [batch,12,past_seq,64];
                   logits [batch,seq,50257] and 24 present.I.key/value [batch,12,total_seq,64]
                   (references at seq 8 after past_seq 16)
  lstm             2-layer nn.LSTM, input 256, hidden 512: input [64,1,256] -> output
                   [64,1,512], h_n and c_n [2,1,512]
  dcgan            DCGAN generator (ConvTranspose2d stack): z [1,100,1,1] -> image [1,3,64,64]
  deeplabv3        torchvision DeepLabV3-MobileNetV3-Large, 21 classes: input [1,3,256,256]
                   -> out [1,21,256,256] (bilinear Resize)
  ssd              SSD-style detector (class SSDLite): MobileNetV3-Large features, conv
                   heads, box decoding, batched NMS (NonMaxSuppression): input [1,3,320,320]
                   -> boxes [detections,4], scores [detections], labels int64[detections]
  mlp              784-512-512-10 MLP with ReLU, input [1,784] -> output [1,10]
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

    def split(self, x):  # [B, S, H*D] -> [B, H, S, D]
        if self.seq is None:  # dynamic batch and sequence length: reshape with -1
            return x.reshape(x.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)
        return x.reshape(1, self.seq, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        if self.seq is None:
            ctx = ctx.transpose(1, 2).reshape(x.shape[0], -1, self.heads * self.head_dim)
        else:
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
        # seq=None: dynamic batch and sequence length (positions and token types from the input's shape)
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_pos, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn, seq) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)
        self.dynamic = seq is None
        if not self.dynamic:
            self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0), persistent=False)
            self.register_buffer("type_ids", torch.zeros(1, seq, dtype=torch.long), persistent=False)

    def forward(self, input_ids):
        if self.dynamic:
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            x = self.word(input_ids) + self.position(positions) + self.token_type(torch.zeros_like(input_ids))
        else:
            x = self.word(input_ids) + self.position(self.position_ids) + self.token_type(self.type_ids)
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x)
        return x, torch.tanh(self.pool(x[:, 0]))


class GPT2Block(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, 4 * hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc_out = nn.Linear(4 * hidden, hidden)

    def forward(self, x, past_k, past_v, mask):
        b, s = x.shape[0], x.shape[1]
        q, k, v = self.qkv(self.ln1(x)).split(self.heads * self.head_dim, dim=2)
        q, k, v = (t.reshape(b, s, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        k = torch.cat([past_k, k], dim=2)  # [B, H, P+S, D]: the new present
        v = torch.cat([past_v, v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = torch.where(mask, scores, torch.tensor(torch.finfo(torch.float32).min))
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, s, -1)
        x = x + self.proj(ctx)
        return x + self.fc_out(self.act(self.fc(self.ln2(x)))), k, v


class GPT2(nn.Module):
    """GPT-2-small shapes (12 pre-LN layers, hidden 768, 12 heads, vocab 50257, 1024
    positions) with a key/value cache: inputs input_ids [B, S] and past_key_values.I.key /
    .value [B, 12, P, 64]; outputs logits [B, S, 50257] and present.I.key / .value
    [B, 12, P+S, 64]. B, S and P are dynamic (the example traced has B = 1). The causal mask lets query i (at position P+i)
    see keys 0..P+i; it is built from Range and a comparison, so it follows S and P."""

    def __init__(self, vocab=50257, hidden=768, heads=12, layers=12, n_pos=1024):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(n_pos, hidden)
        self.blocks = nn.ModuleList(GPT2Block(hidden, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, input_ids, *past):
        s, p = input_ids.shape[1], past[0].shape[2]
        pos = torch.arange(s) + p
        x = self.wte(input_ids) + self.wpe(pos).unsqueeze(0)
        mask = torch.arange(s + p).unsqueeze(0) <= pos.unsqueeze(1)  # [S, P+S]
        presents = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past[2 * i], past[2 * i + 1], mask)
            presents += [k, v]
        return (self.lm_head(self.ln_f(x)), *presents)


GPT2_LAYERS = 12
GPT2_PAST = [n for i in range(GPT2_LAYERS) for n in (f"past_key_values.{i}.key", f"past_key_values.{i}.value")]
GPT2_PRESENT = [n for i in range(GPT2_LAYERS) for n in (f"present.{i}.key", f"present.{i}.value")]


def gpt2_example():
    # S = 8 new tokens after P = 4 cached ones (different sizes, so the trace keeps them apart)
    return (torch.randint(0, 50257, (1, 8)), *(torch.randn(1, 12, 4, 64) for _ in GPT2_PAST))


class LSTM2(nn.Module):
    """2-layer LSTM, input 256, hidden 512, sequence-first: x [64, 1, 256] -> output
    [64, 1, 512], h_n and c_n [2, 1, 512] (initial states zero)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(256, 512, num_layers=2)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return y, h, c


def dcgan():
    """DCGAN generator (Radford et al.): z [1, 100, 1, 1] -> image [1, 3, 64, 64], tanh."""
    def up(cin, cout, stride, pad):
        return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    model = nn.Sequential(*up(100, 512, 1, 0), *up(512, 256, 2, 1), *up(256, 128, 2, 1), *up(128, 64, 2, 1),
                          nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
    return calibrate(model, lambda: torch.randn(16, 100, 1, 1))


class Segmentation(nn.Module):
    """torchvision DeepLabV3 with a MobileNetV3-Large backbone, 21 classes, input 256x256;
    the ASPP and the final upsampling are Resize (bilinear)."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.net = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False)
        calibrate(self.net, lambda: torch.rand(4, 3, 256, 256) * 2 - 1)

    def forward(self, x):
        return self.net(x)["out"]


class SSDLite(nn.Module):
    """SSD-style detector: a MobileNetV3-Large feature extractor (torchvision, features at
    strides 16 and 32), a 3x3 conv head per level predicting 6 anchors x (4 box deltas +
    21 class scores), box decoding against fixed anchors, and torchvision.ops.batched_nms
    (NonMaxSuppression in ONNX). Input [1, 3, 320, 320]; outputs boxes [N, 4], scores [N],
    labels [N] (int64), N data-dependent. Written here rather than torchvision's
    ssdlite320_mobilenet_v3_large, whose export (transform, per-class Python loops) gives a
    graph dominated by preprocessing and data-dependent loops."""

    def __init__(self, classes=21, anchors=6):
        super().__init__()
        import torchvision

        feats = torchvision.models.mobilenet_v3_large(weights=None).features
        self.stage1, self.stage2 = feats[:13], feats[13:]  # 112 ch at /16, 960 ch at /32
        self.classes, self.anchors = classes, anchors
        self.heads = nn.ModuleList(nn.Conv2d(c, anchors * (4 + classes), 3, padding=1) for c in (112, 960))
        priors = []
        for stride, size in ((16, 20), (32, 10)):
            ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            cx, cy = (xs.float() + 0.5) * stride, (ys.float() + 0.5) * stride
            for a in range(anchors):
                w = h = stride * (1.5 + 0.5 * a)
                priors.append(torch.stack([cx, cy, torch.full_like(cx, w), torch.full_like(cy, h)], -1).reshape(-1, 4))
        # priors in the head's output order: level, then position, then anchor
        lv = [torch.stack(priors[i * anchors:(i + 1) * anchors], 1).reshape(-1, 4) for i in range(2)]
        self.register_buffer("priors", torch.cat(lv), persistent=False)
        calibrate(self, lambda: torch.rand(4, 3, 320, 320) * 2 - 1)

    def forward(self, x):
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        outs = []
        for f, head in zip((f1, f2), self.heads):
            outs.append(head(f).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4 + self.classes))
        if self.training:
            return outs
        out = torch.cat(outs, 1)[0]
        d, logits = out[:, :4], out[:, 4:]
        p = self.priors
        cxcy = p[:, :2] + 0.1 * d[:, :2] * p[:, 2:]
        wh = p[:, 2:] * torch.exp(0.2 * d[:, 2:])
        boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], 1)
        scores, labels = torch.softmax(logits, -1)[:, 1:].max(-1)  # best non-background class
        keep = torchvision_ops().batched_nms(boxes, scores, labels, 0.45)[:100]
        return boxes[keep], scores[keep], labels[keep] + 1


def torchvision_ops():
    import torchvision

    return torchvision.ops


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def calibrate(model, batch):
    """Measures the BatchNorm statistics on two random batches (train mode, cumulative
    average) and returns the model. With the initial statistics (mean 0, variance 1),
    activations shrink or grow layer after layer (MobileNetV2's outputs end near 1e-9,
    ResNet-50's near 30), which would make the kiln-vs-ORT check meaningless."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(batch())
    return model


def torchvision_model(name, size=224):
    """A torchvision classifier with random weights and calibrated BatchNorm statistics."""
    import torchvision  # python3-torchvision; imported here so the other models need only torch

    model = getattr(torchvision.models, name)(weights=None)
    # ViT initializes its classification head to zeros (as for fine-tuning), which makes
    # every output 0 and the kiln-vs-ORT check vacuous: give such layers random weights.
    for m in model.modules():
        if isinstance(m, nn.Linear) and not m.weight.any():
            nn.init.normal_(m.weight, std=0.02)
    return calibrate(model, lambda: torch.rand(8, 3, size, size) * 2 - 1)


def image(size=224):
    return lambda: (torch.randn(1, 3, size, size),)


class Spec:
    """One model of the set. example() returns the export's input tuple; dynamic maps an
    input or output name to {axis: symbolic name}; ref_shapes are the concrete shapes
    (NAME=D0xD1...) given to bench/make_refs.sh for the dynamic inputs; opsets are the
    default opsets."""

    def __init__(self, build, example, inputs, outputs, opsets=(17,), dynamic=None, ref_shapes=(), grad=False):
        self.build, self.example, self.inputs, self.outputs = build, example, inputs, outputs
        self.opsets, self.dynamic, self.ref_shapes = opsets, dynamic, ref_shapes
        # grad: export with autograd on. torch 1.13's nn.MultiheadAttention takes a fused
        # fast path (aten::_native_multi_head_attention, which has no ONNX export) in eval
        # mode unless gradients are enabled for its parameters.
        self.grad = grad


def classifier(name):
    return Spec(lambda: torchvision_model(name), image(), ["input"], ["output"])


def gpt2_dynamic():
    d = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    d.update({n: {0: "batch", 2: "past_seq"} for n in GPT2_PAST})
    d.update({n: {0: "batch", 2: "total_seq"} for n in GPT2_PRESENT})
    return d


MODELS = {
    "resnet50": Spec(lambda: torchvision_model("resnet50"), image(), ["input"], ["output"], (13, 17)),
    "mobilenet_v2": Spec(lambda: torchvision_model("mobilenet_v2"), image(), ["input"], ["output"], (13, 17)),
    "efficientnet_b0": classifier("efficientnet_b0"),
    "densenet121": classifier("densenet121"),
    "shufflenet_v2": classifier("shufflenet_v2_x1_0"),
    "convnext_tiny": classifier("convnext_tiny"),
    "vit_b_16": Spec(lambda: torchvision_model("vit_b_16"), image(), ["input"], ["output"], grad=True),
    "bert": Spec(Bert, lambda: (torch.randint(0, 30522, (1, 128)),), ["input_ids"],
                 ["last_hidden_state", "pooler_output"], (13, 17)),
    "bert_dyn": Spec(lambda: Bert(seq=None), lambda: (torch.randint(0, 30522, (2, 16)),), ["input_ids"],
                     ["last_hidden_state", "pooler_output"],
                     dynamic={"input_ids": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"},
                              "pooler_output": {0: "batch"}},
                     ref_shapes=("input_ids=2x64",)),
    "gpt2": Spec(GPT2, gpt2_example, ["input_ids"] + GPT2_PAST, ["logits"] + GPT2_PRESENT,
                 dynamic=gpt2_dynamic(),
                 ref_shapes=("input_ids=1x8",) + tuple(f"{n}=1x12x16x64" for n in GPT2_PAST)),
    "lstm": Spec(LSTM2, lambda: (torch.randn(64, 1, 256),), ["input"], ["output", "h_n", "c_n"]),
    "dcgan": Spec(dcgan, lambda: (torch.randn(1, 100, 1, 1),), ["z"], ["image"]),
    "deeplabv3": Spec(Segmentation, image(256), ["input"], ["out"]),
    "ssd": Spec(SSDLite, image(320), ["input"], ["boxes", "scores", "labels"],
                dynamic={"boxes": {0: "detections"}, "scores": {0: "detections"}, "labels": {0: "detections"}}),
    "mlp": Spec(mlp, lambda: (torch.randn(1, 784),), ["input"], ["output"], (13, 17)),
}


def export(name, opset, out_dir):
    spec = MODELS[name]
    torch.manual_seed(SEED)
    model = spec.build().eval()
    args = spec.example()
    path = os.path.join(out_dir, f"{name}-opset{opset}.onnx")
    tmp = path + ".tmp"
    with torch.set_grad_enabled(spec.grad):
        torch.onnx.export(model, args, tmp, opset_version=opset, input_names=spec.inputs,
                          output_names=spec.outputs, do_constant_folding=True,
                          dynamic_axes=spec.dynamic)
    os.replace(tmp, path)
    # The concrete shapes of the dynamic inputs, for bench/make_refs.sh (one --shape a line).
    shapes = os.path.join(out_dir, f"{name}-opset{opset}.shapes")
    if spec.ref_shapes:
        with open(shapes, "w") as f:
            f.write("".join(s + "\n" for s in spec.ref_shapes))
    elif os.path.exists(shapes):
        os.remove(shapes)
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {params / 1e6:.1f} M parameters, {os.path.getsize(path) / 2**20:.1f} MiB", flush=True)


def type_text(t):
    """'float32[1,3,224,224]' from an onnx TypeProto (symbolic dims by name)."""
    from onnx import mapping

    tt = t.tensor_type
    dims = ",".join(d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in tt.shape.dim)
    return f"{mapping.TENSOR_TYPE_TO_NP_TYPE[tt.elem_type].name}[{dims}]"


def table(out_dir):
    """Markdown rows describing every model file in out_dir (docs/benchmarks.md)."""
    import collections

    import onnx

    print("| model | inputs | outputs | params | size | nodes | ops (count) |")
    print("|---|---|---|---:|---:|---:|---|")
    for f in sorted(os.listdir(out_dir)):
        if not f.endswith(".onnx"):
            continue
        path = os.path.join(out_dir, f)
        m = onnx.load(path, load_external_data=False)
        g = m.graph
        inits = {i.name for i in g.initializer}
        params = sum(math.prod(i.dims) for i in g.initializer)
        ins = [i for i in g.input if i.name not in inits]

        def io(vs):
            if len(vs) > 3:
                return f"`{vs[0].name}` {type_text(vs[0].type)}, ... ({len(vs)} in all)"
            return ", ".join(f"`{v.name}` {type_text(v.type)}" for v in vs)

        ops = collections.Counter(n.op_type for n in g.node)
        top = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"| `{f[:-5]}` | {io(ins)} | {io(list(g.output))} | {params / 1e6:.1f} M | "
              f"{os.path.getsize(path) / 2**20:.1f} MiB | {len(g.node)} | {top} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", metavar="MODEL", help="any of " + ", ".join(MODELS) + " (default: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-models"))
    ap.add_argument("--opsets", help="comma-separated opsets instead of each model's own (torch 1.13: at most 17)")
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    ap.add_argument("--table", action="store_true",
                    help="print a Markdown table of the models in --out (needs python3-onnx) and exit")
    args = ap.parse_args()
    if args.list:
        print("\n".join(MODELS))
        return 0
    if args.table:
        table(args.out)
        return 0
    for name in args.models:
        if name not in MODELS:
            ap.error(f"unknown model '{name}'; the models are {', '.join(MODELS)}")
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.models or list(MODELS):
        opsets = [int(o) for o in args.opsets.split(",")] if args.opsets else MODELS[name].opsets
        for opset in opsets:
            export(name, opset, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
