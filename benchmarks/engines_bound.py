"""What bounds local generation on this CPU: the decode step's matmuls alone.

    python benchmarks/engines_bound.py                       # the 1.5B, batches 1, 16, 32, 64
    python benchmarks/engines_bound.py --model qwen2.5-coder-0.5b --batches 16

One decoding step of a batch of B sequences multiplies B activation rows by every weight
matrix of the model (the attention projections, the MLP, the output head). This program
times exactly those matmuls, with random weights of the model's shapes, through the two
kernels the transformers backend uses (``promptopt/backends/local_linears.py``): fbgemm's
int8 x int8 matmul (the default on x86) and oneDNN's pre-packed float32 one. Nothing else
of a step is timed (attention over the KV cache, norms, sampling, Python), so
``B / step time`` is an upper bound on the tokens per second any engine using these
kernels can reach at batch B on this machine.

The shapes are those of the models' published configurations (hidden size, MLP size,
layers, attention and key-value heads, vocabulary; the head's weight is tied to the
embedding and counted once, as a matmul).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# hidden, intermediate, layers, attention heads, key-value heads, vocabulary
SHAPES = {
    "qwen2.5-coder-1.5b": (1536, 8960, 28, 12, 2, 151936),
    "qwen2.5-coder-0.5b": (896, 4864, 24, 14, 2, 151936),
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152),
}


def layer_shapes(model: str) -> list[tuple[int, int, int]]:
    """(in, out, count) of every matmul of one decoding step."""
    hidden, mlp, layers, heads, kv_heads, vocab = SHAPES[model]
    kv = hidden // heads * kv_heads
    per_layer = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden),
                 (hidden, mlp), (hidden, mlp), (mlp, hidden)]  # fmt: skip
    return [(i, o, layers) for i, o in per_layer] + [(hidden, vocab, 1)]


def time_step(linears: list[tuple[object, int]], batch: int, repeats: int) -> list[float]:
    """Seconds for one step's matmuls at ``batch`` rows, ``repeats`` times."""
    import torch

    inputs = {m.in_features: torch.randn(batch, m.in_features) for m, _ in linears}  # type: ignore[attr-defined]
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for module, count in linears:
                x = inputs[module.in_features]  # type: ignore[attr-defined]
                for _ in range(count):
                    module(x)  # type: ignore[operator]
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", choices=sorted(SHAPES))
    parser.add_argument("--batches", default="1,16,32,64")
    parser.add_argument("--kernels", default="int8,float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from promptopt.backends.local_linears import _make_int8_linear_class, _make_packed_linear_class

    shapes = layer_shapes(args.model)
    params = sum(i * o * n for i, o, n in shapes)
    print(f"{args.model}: {params / 1e9:.3f} G matmul weights per step, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"quantized engine {torch.backends.quantized.engine}")  # fmt: skip
    print(f"{'kernel':8} {'batch':>5} {'step ms (median, min-max)':>28} {'bound tok/s':>11} {'GFLOP/s':>8}")
    for kernel in args.kernels.split(","):
        linears = []
        for i, o, n in shapes:
            plain = torch.nn.Linear(i, o, bias=False)
            module = (
                _make_int8_linear_class()(plain)
                if kernel == "int8"
                else _make_packed_linear_class()(plain, 16)
            )
            linears.append((module, n))
            del plain
        for batch in (int(b) for b in args.batches.split(",")):
            time_step(linears, batch, 1)  # warm-up
            times = time_step(linears, batch, args.repeats)
            median = statistics.median(times)
            print(f"{kernel:8} {batch:5d} {median * 1e3:10.1f} ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})"
                  f"{'':>8} {batch / median:11.1f} {2 * params * batch / median / 1e9:8.1f}")  # fmt: skip
        del linears


if __name__ == "__main__":
    main()
