#!/usr/bin/env python3
"""gptq_ref.py: the reference GPTQ (IST-DASLab gptq.py, PyTorch on the CPU)
for bench/scale.sh, timed on the same problem qmoe's bench/gptq_bench times.

usage: gptq_ref.py DIR OUT IN THREADS DEN

Reads DIR/W.f32 (OUT x IN float32 weights) and DIR/H.f32 (IN x IN, the
finished Hessian 2 X^T X / n) as gptq_bench --dump wrote them, and runs
GPTQ as the reference code's GPTQ.fasterquant() does: 4-bit, symmetric,
groups of 128 (the grid of each group from the columns' current values in W,
before the block's own updates reach them), blocks of 128 columns, damping
0.01 of the mean diagonal, the inverse-Hessian factor as Cholesky, cholesky_inverse,
upper Cholesky; no act-order.  Written from the paper (Frantar et al.,
2022) and the algorithm of IST-DASLab/gptq's gptq.py and quant.py; our own
code.  Prints one line of key=value pairs: the CPU and wall seconds of
fasterquant (process time, all threads) and the relative error
tr(D H D^T) / tr(W H W^T) with D = W - Q: the numerator from GPTQ's own
loss (the sum of the squared scaled errors, which is tr(D (H + damp I) D^T))
less damp ||D||^2 over the live columns, as qmoe's quant_log computes it,
and the denominator DEN as gptq_bench printed it (no product of the
Hessian's size on either side).  Exit status 77 without torch.
"""
import sys
import time

try:
    import numpy as np
    import torch
except ImportError as e:  # the bench skips the comparison
    print(f"gptq_ref.py: {e}", file=sys.stderr)
    sys.exit(77)


def quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def find_params(x, maxq):
    """Symmetric per-row grid of x (rows, cols), as quant.py's Quantizer."""
    zero_t = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], zero_t)
    xmax = torch.maximum(x.max(1)[0], zero_t)
    xmax = torch.maximum(torch.abs(xmin), xmax)
    tmp = xmin < 0
    if torch.any(tmp):
        xmin[tmp] = -xmax[tmp]
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp] = -1
    xmax[tmp] = +1
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def fasterquant(W, H, bits=4, blocksize=128, percdamp=0.01, groupsize=128):
    W = W.clone().float()
    columns = W.shape[1]
    maxq = 2 ** bits - 1
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Q = torch.zeros_like(W)
    loss = 0.0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    scale = zero = None
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % groupsize == 0:
                scale, zero = find_params(W[:, (i1 + i):(i1 + i + groupsize)], maxq)
            q = quantize(w.unsqueeze(1), scale, zero, maxq).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        loss += float(torch.sum(Err1.double() ** 2))
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q, loss, float(damp), dead


def main():
    if len(sys.argv) != 6:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    d, out, inn, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    den = float(sys.argv[5])
    torch.set_num_threads(threads)
    W = torch.from_numpy(np.fromfile(f"{d}/W.f32", dtype=np.float32).reshape(out, inn))
    H = torch.from_numpy(np.fromfile(f"{d}/H.f32", dtype=np.float32).reshape(inn, inn))
    c0, t0 = time.process_time(), time.perf_counter()
    Q, loss, damp, dead = fasterquant(W, H)
    cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - t0
    D = (W - Q).double()
    D[:, dead] = 0
    err = (loss - damp * float(torch.sum(D ** 2))) / den
    print(f"ref_gptq_s={wall_s:.3f} ref_gptq_cpu_s={cpu_s:.3f} ref_error={err:.6g} torch={torch.__version__} "
          f"threads={threads}")


if __name__ == "__main__":
    main()
