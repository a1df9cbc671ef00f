#!/usr/bin/env python3
"""bench/make_serve_models.py: the models of the `kiln serve` load figures (docs/benchmarks.md,
"kiln serve under load"), exported with PyTorch as bench/make_models.py does.

  resnet50_dynbatch   torchvision ResNet-50 (random weights, calibrated BatchNorm), input
                      "input" [N,3,224,224] -> output "output" [N,1000], N dynamic, opset 17

Usage: python3 bench/make_serve_models.py [OUT_DIR]   (default build/bench-models-serve)
Needs Debian's python3-torch and python3-torchvision (run it with /usr/bin/python3 where
another python3 comes first in PATH).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models import torchvision_model  # noqa: E402


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "bench-models-serve")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision_model("resnet50").eval()
    path = os.path.join(out_dir, "resnet50_dynbatch.onnx")
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), tmp, opset_version=17, input_names=["input"],
                          output_names=["output"], do_constant_folding=True,
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    os.replace(tmp, path)
    print(path)


if __name__ == "__main__":
    main()
