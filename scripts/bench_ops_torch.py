#!/usr/bin/env python3
"""PyTorch CPU figures for the ops `enas bench ops` times: forward + backward of
depthwise 3x3 / 5x5 convolution and 3x3 stride-1 max / average pooling (padding
excluded from the average), median milliseconds. One JSON object a line, in
the same form as `enas bench ops --json`."""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--shape", type=int, nargs=4, default=[64, 32, 16, 16])
    a = p.parse_args()
    n, c, h, w = a.shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    ops = {}
    for k in (3, 5):
        wt = (torch.randn(c, 1, k, k) * 0.3).requires_grad_()
        ops[f"depthwise{k}x{k}"] = lambda wt=wt, k=k: F.conv2d(x, wt, padding=k // 2, groups=c)
    ops["maxpool3x3"] = lambda: F.max_pool2d(x, 3, 1, 1)
    ops["avgpool3x3"] = lambda: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    for name, f in ops.items():
        ms = median_ms(lambda: f().sum().backward(), a.reps)
        print(json.dumps({"op": name, "impl": "pytorch", "ms": ms, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
