"""What tests/test_fsdp.py launches: one process, or several under torchrun (gloo on the CPU).

``runs ROOT SPEC.json``: one ``coin run`` (in process) per variant of SPEC (``{"base": config,
"variants": {name: overrides}}``) into ROOT/<name>; a variant refused before training writes
ROOT/<name>.refused with the message. Running them all in one process pays the imports and the
process group once.

``units OUT``: the sharded model against the unsharded one, in process: batched answers with
processes holding different numbers of questions (lockstep) and EWC's Fisher (OUT/units-rank<r>.json);
then the peak tensor bytes of a training step under DDP and FSDP, to set beside
``coin.engine.memory``'s estimate (OUT/memory-rank<r>.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def runs(root: Path, spec: dict) -> None:
    from coin.config import ConfigError, merge
    from coin.config_load import from_dict
    from coin.engine import dist
    from coin.engine import run as run_module
    from coin.api import run

    loaded = root / f"loaded-rank{dist.rank()}.jsonl"
    load_model = run_module.load_model

    def recording_load(*args, **kwargs):  # what each process holds in host memory once the model is loaded
        vlm = load_model(*args, **kwargs)
        held = sum(p.numel() * p.element_size() for p in vlm.model.parameters() if not p.is_meta)
        with loaded.open("a") as f:
            f.write(json.dumps({"weight_bytes": held, "params": sum(p.numel() for p in vlm.model.parameters())}) + "\n")
        return vlm

    run_module.load_model = recording_load

    from coin.engine import fsdp

    adamw, made = fsdp.adamw, []

    def recording_adamw(*args, **kwargs):  # the optimisers of a run's stages, to weigh their state after it
        opt = adamw(*args, **kwargs)
        made.append(opt)
        return opt

    fsdp.adamw = recording_adamw

    for name, over in spec["variants"].items():
        made.clear()
        try:
            run(from_dict(merge(spec["base"], over)), root / name, progress=False, log=lambda m: None)
        except (dist.UnsupportedLaunch, ConfigError) as e:  # refused by the engine, or by the method's check_run
            if dist.is_main():
                (root / f"{name}.refused").write_text(str(e))
        with (root / f"optimizer-rank{dist.rank()}.jsonl").open("a") as f:  # what each process keeps of AdamW's state
            f.write(json.dumps({"variant": name, "state_bytes": [fsdp.local_state_bytes(o) for o in made],
                                "trainable_bytes": [sum(p.numel() * p.element_size() for g in o.param_groups
                                                        for p in g["params"]) for o in made]}) + "\n")


def units(out: Path) -> None:
    import torch
    import torch.distributed as tdist

    sys.path.insert(0, str(Path(__file__).parent))
    from tinyvlm import sharp_vlm_and_samples

    from coin.adapters import attach_adapter
    from coin.config_load import section
    from coin.engine import dist, fsdp
    from coin.methods.ewc import estimate_fisher

    world, rank = dist.world(), dist.rank()
    if world > 1:
        tdist.init_process_group("gloo")
    prompts = ["What colour is the large shape?", "Name the shape.", "Where is the small square?",
               "What is written?", "Is there a circle?", "How many shapes are there?", "What colour is it?"]
    vlm, samples = sharp_vlm_and_samples(out / "images", prompts, data_seed=1, model_seed=2)
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", type="moelora", r=4, alpha=8, experts=2))
    with torch.no_grad():  # a trained-looking adapter: B = 0 would add nothing to compare
        for n, p in vlm.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    reference = vlm.generate(samples, 12)  # every process, unsharded, one batch
    fisher_ref = estimate_fisher(vlm, samples[:3])
    result = {"reference": reference}
    if world > 1:
        fsdp.shard(vlm.model, torch.device("cpu"), log=lambda m: None)
        # rank 0 answers 5 questions in batches of 2 (3 prefills), rank 1 two in one batch: different
        # numbers of forwards, which lockstep pairs
        mine = list(range(5)) if rank == 0 else list(range(5, 7))
        with fsdp.lockstep(vlm.model):
            answers = {i: a for k in range(0, len(mine), 2)
                       for i, a in zip(mine[k : k + 2], vlm.generate([samples[i] for i in mine[k : k + 2]], 12))}
            dist.barrier()
        result["answers"] = answers
        fisher = estimate_fisher(vlm, samples[:3])
        result["fisher_diff"] = max((fisher[n] - fisher_ref[n]).abs().max().item() for n in fisher_ref)
        result["fisher_max"] = max(f.abs().max().item() for f in fisher_ref.values())
    (out / f"units-rank{rank}.json").write_text(json.dumps(result))
    if world > 1:
        qwen_units(out, samples)
        memory(out)  # in the same launch: one start of the process group
        tdist.destroy_process_group()


def qwen_units(out: Path, samples: list) -> None:
    """A tiny Qwen2-VL (transformers' ``generate``, not coin's decoder) sharded over the processes,
    each answering a different number of questions (rank 0: 5 in batches of 2, rank 1: 2 in one):
    the answers are the unsharded model's for the same batches (OUT/qwen-rank<r>.json).

    Under ``fully_shard`` transformers' ``generate`` turns on its own per-step sync (``synced_gpus``)
    unless told not to; its collectives then interleave with coin's lockstep and the processes
    stop ("Received data size doesn't match") or hang, which is what this part guards."""
    import torch

    import tinyhf
    from coin.adapters import attach_adapter
    from coin.config_load import section
    from coin.engine import dist, fsdp
    from coin.models.chat.wrapper import load_chat_vlm

    rank = dist.rank()
    folder = out / "qwen2-vl"
    if rank == 0:
        tinyhf.build_qwen2_vl(folder)
    dist.barrier()
    vlm = load_chat_vlm(section("model", name="qwen2-vl", path=str(folder)))
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", type="lora", r=4, alpha=8))  # the base frozen, as in a run
    with torch.no_grad():
        for n, p in vlm.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    mine = list(range(5)) if rank == 0 else list(range(5, 7))
    batches = [[samples[i] for i in mine[k : k + 2]] for k in range(0, len(mine), 2)]
    reference = [a for b in batches for a in vlm.generate(b, 6)]  # unsharded, the same batches
    fsdp.shard(vlm.model, torch.device("cpu"), log=lambda m: None)
    with fsdp.lockstep(vlm.model, pad_id=vlm.pad_id):
        answers = [a for b in batches for a in vlm.generate(b, 6)]
        dist.barrier()
    (out / f"qwen-rank{rank}.json").write_text(json.dumps({"reference": reference, "answers": answers}))


class _PeakBytes:
    """The peak of live tensor storage bytes on this process while the block runs: ``held`` (the weights,
    buffers and optimiser state there before) plus every storage an operation creates, counted at its
    size after each operation (FSDP frees and refills its gather buffers by resizing them) until it is
    freed. (torch's MemTracker cannot follow the frozen vision tower, which runs without autograd.)"""

    def __init__(self, held: list) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        self.live: dict = {}
        self.peak = 0
        for t in held:
            self._add(t)
        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten((out, args))[0]:
                    tracker._add(t)
                tracker.peak = max(tracker.peak, tracker.now())
                return out

        self.mode = Mode()
        self.peak = self.now()

    def _add(self, t) -> None:
        import torch
        from torch.distributed.tensor import DTensor
        from torch.multiprocessing.reductions import StorageWeakRef

        if isinstance(t, DTensor):
            t = t._local_tensor
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            ref = StorageWeakRef(t.untyped_storage())
            self.live.setdefault(ref.cdata, ref)

    def now(self) -> int:
        import torch

        for key in [k for k, ref in self.live.items() if ref.expired()]:
            del self.live[key]
        return sum(torch.UntypedStorage._new_with_weak_ptr(k).nbytes() for k in self.live)

    def __enter__(self) -> "_PeakBytes":
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)


def memory(out: Path) -> None:
    """Peak tensor bytes of one training step (after a first one made AdamW's state) of a small LLaVA with
    LoRA, under DDP and under FSDP, measured by ``_PeakBytes`` on this process's tensors."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from tinyvlm import tiny_samples, tokenizer

    from coin.adapters import attach_adapter
    from coin.config_load import section
    from coin.engine import dist, fsdp
    from coin.models.tiny.model import TinyConfig, build_model, build_processor
    from coin.models.llava.wrapper import LlavaVLM
    from coin.models.modes import checkpoint_activations

    cfg = TinyConfig(vocab_size=300, vision_width=32, vision_layers=1, vision_heads=2, lm_width=128, lm_layers=4,
                     lm_heads=4, lm_ffn=512)
    samples = tiny_samples(out / "images", "TaskA", 8)
    result = {}
    for name in ("ddp", "fsdp", "fsdp-checkpointing"):
        strategy = name.split("-")[0]
        vlm = LlavaVLM(build_model(cfg, tokenizer(), seed=0), build_processor(tokenizer(), cfg))
        if name.endswith("checkpointing"):  # as coin.models.backbone.load_model does for model.gradient_checkpointing
            checkpoint_activations(vlm.model)
        torch.manual_seed(0)
        attach_adapter(vlm, section("adapter", r=8, alpha=16))
        model = vlm.model
        params = [p for p in model.parameters() if p.requires_grad]
        if strategy == "fsdp":
            fsdp.shard(model, torch.device("cpu"), log=lambda m: None)
            engine = model
        else:
            engine = torch.nn.parallel.DistributedDataParallel(model)
        opt = fsdp.adamw([{"params": params}], strategy == "fsdp", lr=1e-3)  # as coin's training: moments sharded
        batch = vlm.train_batch(samples[dist.rank() * 4 : dist.rank() * 4 + 4])

        def step():
            engine(**batch).loss.backward()
            if strategy == "fsdp":
                fsdp.reduce_gradients(params)
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()
        state = opt.optim.state if fsdp.is_sharded_optimizer(opt) else opt.state
        held = [*model.parameters(), *model.buffers(), *(v for st in state.values() for v in st.values())]
        with _PeakBytes(held) as tracker:
            step()
        result[name] = tracker.peak
        del engine, model, opt
    result.update(config=vlm.model.config.to_dict(), batch=4, tokens=int(batch["input_ids"].shape[1]))
    (out / f"memory-rank{dist.rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "runs":
        runs(target, json.loads(Path(sys.argv[3]).read_text()))
    else:
        units(target)
