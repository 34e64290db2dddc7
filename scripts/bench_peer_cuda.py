#!/usr/bin/env python3
"""The PyTorch reference workloads (../shared/peer/enas_{micro,macro}_torch.py)
on a GPU: their model classes, optimiser and step, moved to CUDA, timed the
way `enas bench supernet --device cuda` is timed (warm-up steps first, the
loss read back every step, so each step ends on the device).

    python3 scripts/bench_peer_cuda.py --peer PATH/enas_micro_torch.py \
        --space micro --arcs PATH/micro_arcs.txt --batch 160 --steps 50
Prints one JSON object, like the peer scripts.
"""
import argparse
import importlib.util
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", required=True, help="path of enas_micro_torch.py or enas_macro_torch.py")
    p.add_argument("--space", choices=["micro", "macro"], required=True)
    p.add_argument("--arcs", required=True)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=160)
    p.add_argument("--channels", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    spec = importlib.util.spec_from_file_location("peer", args.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    torch.manual_seed(0)
    dev = torch.device(args.device)
    arcs = [list(map(int, line.split())) for line in open(args.arcs) if line.strip()]
    if args.space == "micro":
        channels, layers = args.channels or 20, args.layers or 6
        net = peer.EnasMicroSupernet(args.in_channels, 10, channels, layers, args.nodes)
        b4 = 4 * args.nodes
        forward = lambda x, arc: net(x, arc[:b4], arc[b4:2 * b4])
        decay = 1e-4
    else:
        channels, layers = args.channels or 36, args.layers or 12
        net = peer.EnasMacroSupernet(args.in_channels, 10, channels, layers)
        forward = lambda x, arc: net(x, arc)
        decay = 2.5e-4
    net = net.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=decay)
    x = torch.randn(args.batch, args.in_channels, args.image, args.image, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    net.train()

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x, arcs[i % len(arcs)]), y)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        return loss.item()

    for i in range(args.warmup):
        step(i)
    torch.cuda.synchronize(dev)
    t = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "device": torch.cuda.get_device_name(dev),
                      "space": args.space, "images_per_s": args.steps * args.batch / dt, "seconds": dt,
                      "steps": args.steps, "batch": args.batch, "channels": channels, "layers": layers,
                      "peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20}))


if __name__ == "__main__":
    main()
