#!/usr/bin/env python3
"""The PyTorch peer of the final retrain (issue 25): the fixed micro child at
the paper's final size, built as `enas` builds it (src/model/micro_net.rs:
stem, 15 normal cells in three stages with two reduction cells, auxiliary
head at 0.4, drop-path 0.4, dropout 0.2, classifier), trained with SGD +
Nesterov and the global-norm clip at 5, batch 144. Timed as
scripts/bench_peer_cuda.py times the search step: warm-up steps first, then
each step's loss read back so it ends on the device. Synthetic CIFAR-sized
batches (augmentation and cutout are the data loader's, outside the step).

Modes: f32 (eager), bf16 (eager, torch.autocast to bfloat16), compile
(torch.compile of the step under autocast bf16), compile-f32.

    python3 scripts/bench_retrain_torch.py --mode f32 --steps 30
    python3 scripts/bench_retrain_torch.py --params --layers 3 --channels 12 --image 28 --in-channels 1
Prints one JSON object.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PUBLISHED = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"
BN_EPS = 1e-5


def bn(c):
    # Running statistics at the authors' decay 0.9 (PyTorch's momentum is 1 - decay).
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.1)


class ReluConvBn(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = bn(c_out)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x)))


class SepConv(nn.Module):
    """Twice: ReLU, depthwise k x k (the first may stride), pointwise 1x1, batch norm."""

    def __init__(self, c, k, stride):
        super().__init__()
        layers = []
        for i in range(2):
            layers += [
                nn.ReLU(),
                nn.Conv2d(c, c, k, stride=stride if i == 0 else 1, padding=k // 2, groups=c, bias=False),
                nn.Conv2d(c, c, 1, bias=False),
                bn(c),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class FactorizedReduce(nn.Module):
    """Two 1x1 convolutions, of the even and of the odd pixels, concatenated, then batch norm."""

    def __init__(self, c_in, c_out, relu=False):
        super().__init__()
        self.relu = relu
        self.path1 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.path2 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.bn = bn(c_out)

    def forward(self, x):
        if self.relu:
            x = F.relu(x)
        even = x[:, :, ::2, ::2]
        # The odd grid, padded with zeros where an odd side leaves it short (TensorFlow's shift and pad).
        odd = F.pad(x[:, :, 1::2, 1::2], (0, even.shape[3] - (x.shape[3] // 2), 0, even.shape[2] - (x.shape[2] // 2)))
        return self.bn(torch.cat([self.path1(even), self.path2(odd)], 1))


class Pool(nn.Module):
    """3x3 pooling with TensorFlow's 'same' padding; the average counts only pixels inside."""

    def __init__(self, kind, stride):
        super().__init__()
        self.kind, self.stride = kind, stride

    def forward(self, x):
        if self.kind == "avg":
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        return F.max_pool2d(x, 3, self.stride, 1)


def branch(op, c, stride):
    if op in (0, 1):
        return SepConv(c, (3, 5)[op], stride)
    if op in (2, 3):
        return Pool("avg" if op == 2 else "max", stride)
    return FactorizedReduce(c, c) if stride > 1 else nn.Identity()


def drop_path(x, keep):
    mask = torch.bernoulli(torch.full((x.shape[0], 1, 1, 1), keep, device=x.device, dtype=x.dtype))
    return x * mask / keep


class Cell(nn.Module):
    def __init__(self, arc, prev, c, reduction):
        super().__init__()
        (c0, hw0), (c1, hw1) = prev
        if hw0 != hw1:
            self.calibrate_x = FactorizedReduce(c0, c, relu=True)
        elif c0 != c:
            self.calibrate_x = ReluConvBn(c0, c)
        else:
            self.calibrate_x = nn.Identity()
        self.calibrate_y = ReluConvBn(c1, c) if c1 != c else nn.Identity()
        self.base = ReluConvBn(c, c)
        stride = 2 if reduction else 1
        self.inputs, self.x_ops, self.y_ops = [], nn.ModuleList(), nn.ModuleList()
        sizes = [hw1, hw1]
        used = [False] * (len(arc) // 4 + 2)
        for n in range(len(arc) // 4):
            x_id, x_op, y_id, y_op = arc[4 * n : 4 * n + 4]
            s = lambda i: stride if i < 2 else 1
            self.x_ops.append(branch(x_op, c, s(x_id)))
            self.y_ops.append(branch(y_op, c, s(y_id)))
            self.inputs.append((x_id, y_id))
            used[x_id] = used[y_id] = True
            sizes.append((sizes[x_id] + 1) // 2 if x_id < 2 and reduction else sizes[x_id])
        self.out = [i for i, u in enumerate(used) if not u]
        out_hw = min(sizes[i] for i in self.out)
        self.combine = nn.ModuleDict({str(i): FactorizedReduce(c, c) for i in self.out if sizes[i] != out_hw})
        self.out_shape = (c * len(self.out), out_hw)

    def forward(self, x0, x1, keep):
        states = [self.calibrate_x(x0), self.base(self.calibrate_y(x1))]
        for (x_id, y_id), xb, yb in zip(self.inputs, self.x_ops, self.y_ops):
            x, y = xb(states[x_id]), yb(states[y_id])
            if self.training and keep < 1.0:
                x = x if isinstance(xb, nn.Identity) else drop_path(x, keep)
                y = y if isinstance(yb, nn.Identity) else drop_path(y, keep)
            states.append(x + y)
        return torch.cat([self.combine[str(i)](states[i]) if str(i) in self.combine else states[i] for i in self.out], 1)


class AuxHead(nn.Module):
    def __init__(self, c, hw, classes):
        super().__init__()
        self.k = min(5, hw)
        area = ((hw - self.k) // 3 + 1) ** 2
        self.proj = nn.Conv2d(c, 128, 1, bias=False)
        self.proj_bn = bn(128)
        self.wide = nn.Linear(128 * area, 768, bias=False)
        self.wide_bn = nn.BatchNorm1d(768, eps=BN_EPS, momentum=0.1)
        self.fc = nn.Linear(768, classes, bias=False)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(x), self.k, 3)
        x = F.relu(self.proj_bn(self.proj(x)))
        x = F.relu(self.wide_bn(self.wide(x.flatten(1))))
        return self.fc(x)


class MicroNet(nn.Module):
    def __init__(self, arc, in_channels, classes, channels, layers, image, aux=True, drop_path=0.4, dropout=0.2):
        super().__init__()
        normal, reduce = arc[:20], arc[20:]
        self.layers, self.drop_path_rate, self.dropout = layers, drop_path, dropout
        stem_c = 3 * channels
        self.stem = nn.Conv2d(in_channels, stem_c, 3, padding=1, bias=False)
        self.stem_bn = bn(stem_c)
        d = layers // 3
        pools = (d, 2 * d + 1)
        prev = [(stem_c, image), (stem_c, image)]
        c = channels
        self.cells = nn.ModuleList()
        self.aux_at, self.aux = None, None
        for layer_id in range(layers + 2):
            reduction = layer_id in pools
            if reduction:
                c *= 2
            cell = Cell(reduce if reduction else normal, prev, c, reduction)
            self.cells.append(cell)
            prev = [prev[1], cell.out_shape]
            if aux and layer_id == pools[1] + 1:
                self.aux_at, self.aux = layer_id, AuxHead(cell.out_shape[0], cell.out_shape[1], classes)
        self.fc = nn.Linear(prev[1][0], classes, bias=False)
        self.progress = 0.0

    def forward(self, x):
        s = self.stem_bn(self.stem(x))
        x0, x1, aux = s, s, None
        for layer_id, cell in enumerate(self.cells):
            # The authors' drop-path: deeper cells drop more, the rate ramped up over training.
            keep = 1.0 - min(max(self.progress, 0.0), 1.0) * (layer_id + 1) / (self.layers + 2) * self.drop_path_rate
            out = cell(x0, x1, keep)
            if self.aux is not None and layer_id == self.aux_at and self.training:
                aux = self.aux(out)
            x0, x1 = x1, out
        x = F.relu(x1).mean((2, 3))
        x = F.dropout(x, self.dropout, self.training)
        return self.fc(x), aux


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arc", default=PUBLISHED, help="the architecture in the authors' string format (default: the published cells)")
    p.add_argument("--mode", choices=["f32", "bf16", "compile", "compile-f32"], default="f32")
    p.add_argument("--layers", type=int, default=15)
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--batch", type=int, default=144)
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--params", action="store_true", help="print the parameter count (with and without the auxiliary head) and stop")
    a = p.parse_args()
    arc = [int(t) for t in a.arc.split()]
    torch.manual_seed(0)
    dev = torch.device(a.device)
    net = MicroNet(arc, a.in_channels, a.classes, a.channels, a.layers, a.image).to(dev)
    count = lambda ps: sum(t.numel() for t in ps)
    params = count(net.parameters())
    aux_params = count(net.aux.parameters()) if net.aux is not None else 0
    if a.params:
        print(json.dumps({"params": params, "params_without_aux": params - aux_params}))
        return
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-4)
    x = torch.randn(a.batch, a.in_channels, a.image, a.image, device=dev)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    net.train()
    net.progress = 0.5
    bf16 = a.mode in ("bf16", "compile")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits, aux = net(x)
            loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        return loss

    if a.mode.startswith("compile"):
        step = torch.compile(step)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(a.warmup):
        step().item()
    sync()
    start = time.perf_counter()
    losses = [step().item() for _ in range(a.steps)]
    sync()
    seconds = time.perf_counter() - start
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(json.dumps({
        "mode": a.mode, "device": name, "torch": torch.__version__, "layers": a.layers, "channels": a.channels, "batch": a.batch,
        "params": params, "steps": a.steps, "seconds": seconds, "images_per_s": a.batch * a.steps / seconds, "last_loss": losses[-1],
    }))


if __name__ == "__main__":
    main()
