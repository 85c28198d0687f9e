"""Context parallelism: one causal ALiBi attention over a sequence sharded across processes (ring attention,
flexjit.distributed), its output gathered and compared with torch's flex_attention on the whole sequence,
and a backward through the ring.

`python3 context_parallel.py` starts its own processes: 2 ranks over gloo on the CPU, or one per GPU over
NCCL (up to 4) where there are at least 2 GPUs. The sequence is cut "zigzag" (torchtitan's layout: every
rank holds one early and one late chunk, so a causal mask gives every rank the same work).
"""
import socket
import warnings

import torch
import torch.distributed as dist
import torch.nn.attention.flex_attention as tflex

import flexjit
from flexjit import distributed as fd

B, H, S, D = 1, 4, 256, 64
LAYOUT = "zigzag"
warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def whole_sequence(device, dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, S, D, device=device, dtype=dtype) for _ in range(3))
    slopes = torch.exp2(-8.0 * torch.arange(1, H + 1, device=device) / H)
    return q, k, v, slopes


def rank_main(rank, world, port, use_nccl):
    device = torch.device("cuda", rank) if use_nccl else torch.device("cpu")
    if use_nccl:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_nccl else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    q, k, v, slopes = whole_sequence(device, torch.bfloat16 if use_nccl else torch.float32)

    def alibi(score, b, h, q_idx, kv_idx):   # global indices, exactly as for one flex_attention call
        return score + slopes[h] * (kv_idx - q_idx)

    # This rank's shards, and the block masks of its ring steps (made once, reused by every layer).
    q_local, k_local, v_local = (fd.shard_sequence(t, LAYOUT).requires_grad_() for t in (q, k, v))
    plan = fd.create_ring_block_mask(causal, None, None, S, S, layout=LAYOUT, device=device)
    out = fd.ring_flex_attention(q_local, k_local, v_local, score_mod=alibi, block_mask=plan)
    out.float().sum().backward()

    gathered = [torch.empty_like(out) for _ in range(world)]
    dist.all_gather(gathered, out.detach())
    if rank == 0:
        print(f"{world} ranks ({'NCCL' if use_nccl else 'gloo'}), layout {LAYOUT}: rank 0 holds positions "
              f"{fd.shard_positions(S, LAYOUT)[[0, -1]].tolist()} (first, last), skipped steps {plan.skipped_steps}")
        full = torch.empty(B, H, S, D, device=device, dtype=out.dtype)
        for r, shard in enumerate(gathered):
            full[:, :, fd.shard_positions(S, LAYOUT, rank=r, world_size=world, device=device)] = shard
        torch_mask = tflex.create_block_mask(causal, None, None, S, S, device=device)
        with torch.no_grad():
            ref = tflex.flex_attention(q, k, v, score_mod=alibi, block_mask=torch_mask)
        diff = (full.float() - ref.float()).abs().max().item()
        print(f"ring attention: out {tuple(full.shape)} {full.dtype} on {device.type}; "
              f"max |flexjit - torch| = {diff:.2e}")
        print(f"  backward: q_local.grad {tuple(q_local.grad.shape)}, norm {q_local.grad.float().norm():.4f}; "
              f"k_local.grad norm {k_local.grad.float().norm():.4f}")
    dist.destroy_process_group()


def main():
    use_nccl = torch.cuda.device_count() >= 2 and dist.is_nccl_available()
    world = min(torch.cuda.device_count(), 4) if use_nccl else 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(rank_main, args=(world, port, use_nccl), nprocs=world, join=True)


if __name__ == "__main__":
    main()
