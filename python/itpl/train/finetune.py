"""Recovery training of a pruned model, and its evaluation.

SGD with momentum, a cosine learning rate after a linear warm-up, label
smoothing, random crop and flip, and optional distillation from a teacher
(the unpruned model). Every random draw comes from generators seeded by
``(seed, epoch)``, and the global RNG state is saved with each checkpoint, so
``resume`` continues an interrupted run exactly: the weights after N epochs
are the same whether or not the run stopped in between.

Launched by ``torchrun``, the same loop runs as DistributedDataParallel: each
rank takes every ``world``-th sample of the epoch's order, gradients are
averaged by DDP, metrics are summed over ranks, and rank 0 writes the files.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from itpl.train.data import LabelledData
from itpl.util.fileio import write_json

CHECKPOINT_FORMAT = "itpl.finetune/1"


@dataclass
class FinetuneConfig:
    """Training settings; see ``itpl finetune --help`` for each."""

    epochs: int
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    kd_weight: float = 0.0
    kd_temperature: float = 4.0
    augment: bool = True
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("`epochs` and `batch_size` must be at least 1")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("`lr` must be positive, `weight_decay` >= 0, `momentum` in [0, 1)")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.kd_weight <= 1:
            raise ValueError("`label_smoothing` must be in [0, 1) and `kd_weight` in [0, 1]")
        if not self.kd_temperature > 0:
            raise ValueError("`kd_temperature` must be positive")


@dataclass
class FinetuneResult:
    history: list[dict] = field(default_factory=list)  # per epoch: loss, train/val top-1, lr
    best_epoch: int = 0
    best_top1: float = 0.0


def lr_at(step: int, steps_per_epoch: int, config: FinetuneConfig) -> float:
    """Linear warm-up to ``lr``, then cosine to zero at the last step."""
    total = config.epochs * steps_per_epoch
    warm = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    if step < warm:
        return config.lr * (step + 1) / warm
    return 0.5 * config.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of 1/8 of the side, as the CIFAR recipe) and
    horizontal flip, per image."""
    n, _, h, w = images.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = F.pad(images, (pw, pw, ph, ph))
    dy = torch.randint(0, 2 * ph + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pw + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def check_classes(model: nn.Module, data: LabelledData, input_shape) -> None:
    """Refuse data whose class count is not the model's output width."""
    with torch.no_grad():
        was = model.training
        outputs = model.eval()(torch.zeros(1, *input_shape)).shape[-1]
        model.train(was)
    if outputs != len(data.classes):
        raise ValueError(f"the model predicts {outputs} classes but the data has "
                         f"{len(data.classes)} ({', '.join(data.classes[:5])}"
                         f"{', ...' if len(data.classes) > 5 else ''}); build the model with "
                         f"`model_arg` num_classes={len(data.classes)} or use matching data")


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: list[float]) -> list[float]:
    import torch.distributed as dist

    if _world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, data: LabelledData, *, batch_size: int = 256) -> dict:
    """Top-1 and top-5 accuracy and mean cross-entropy of ``model`` on ``data``."""
    model.eval()
    rank, world = _world()
    correct1 = correct5 = loss = 0.0
    indices = torch.arange(rank, len(data), world)
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        logits = model(data.images[idx])
        y = data.labels[idx]
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        correct1 += float((top[:, 0] == y).sum())
        correct5 += float((top == y[:, None]).any(dim=-1).sum())
    correct1, correct5, loss, count = _all_sum([correct1, correct5, loss, float(len(indices))])
    return {"top1": correct1 / count, "top5": correct5 / count, "loss": loss / count,
            "samples": int(count)}


@torch.no_grad()
def reestimate_bn(model: nn.Module, data: LabelledData, *, samples: int = 2048,
                  batch_size: int = 128) -> None:
    """Recompute batch-norm running statistics on ``samples`` training images.

    Pruning removes channels but keeps each survivor's statistics, which were
    measured with the removed channels feeding the next layer; a forward pass
    over training data gives the pruned model's own (the accuracy "right
    after pruning" is measured after this).
    """
    reestimate_bn_on(model, data.images[:samples], batch_size=batch_size)


def reestimate_bn_on(model: nn.Module, images: torch.Tensor, *, batch_size: int = 128) -> None:
    """:func:`reestimate_bn` on a batch of images (no labels needed); leaves eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    # Only the norms in training mode: the rest of the model runs as at inference,
    # so dropout stays off and training-only branches (GoogLeNet's auxiliary
    # classifiers, which pruning never traced) stay unused.
    model.eval()
    for m in norms:
        m.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def _save(obj, path: str) -> None:
    from itpl.util.fileio import staged_outputs

    with staged_outputs() as stage:
        torch.save(obj, stage.path(path))


def finetune(model: nn.Module, train: LabelledData, val: LabelledData, config: FinetuneConfig,
             out: str, *, teacher: nn.Module | None = None, resume: bool = False,
             progress: bool = True, on_epoch=None, plan: dict | None = None) -> FinetuneResult:
    """Train ``model`` in place; write ``OUT.pt`` (best val top-1), ``OUT.last.ckpt``
    (to resume) and ``OUT.history.json``.

    Parameters
    ----------
    model : nn.Module
        The (pruned) model; its output width must equal the number of classes.
    train, val : LabelledData
        In-memory splits with the same classes.
    out : str
        Output prefix.
    teacher : nn.Module, optional
        Distil from it with ``config.kd_weight`` and ``config.kd_temperature``.
    resume : bool
        Continue from ``OUT.last.ckpt``; its settings must match ``config``.
    on_epoch : callable, optional
        Called with each epoch's metrics after its checkpoint is written.
    plan : dict, optional
        Written as ``OUT.plan.json`` together with each best ``OUT.pt``, so
        the weights never exist without the plan that rebuilds their model.

    Raises
    ------
    ValueError
        When the loss becomes NaN or Inf (bad data or a learning rate too
        high): training stops; the files of earlier epochs stay as they were.
    """
    config.check()
    if train.classes != val.classes:
        raise ValueError(f"train and val classes differ ({len(train.classes)} vs "
                         f"{len(val.classes)}); both splits need the same class folders")
    if config.kd_weight > 0 and teacher is None:
        raise ValueError("`kd_weight` needs a `teacher`")
    rank, world = _world()
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    params_decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    params_plain = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": params_decay, "weight_decay": config.weight_decay},
                           {"params": params_plain, "weight_decay": 0.0}],
                          lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    per_rank = math.ceil(len(train) / world)
    steps_per_epoch = max(1, math.ceil(per_rank / config.batch_size))
    result, start_epoch = FinetuneResult(), 0
    ckpt_path = f"{out}.last.ckpt"
    if resume:
        if not os.path.exists(ckpt_path):
            raise FileNotFoundError(f"nothing to resume: '{ckpt_path}' does not exist")
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # no pickled code
        except Exception as exc:  # noqa: B902 - torch raises pickle, zip and runtime errors
            raise ValueError(f"cannot read '{ckpt_path}' ({type(exc).__name__}); it is damaged: "
                             "start again without `resume`") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"'{ckpt_path}' is not an itpl finetune checkpoint")
        saved = dict(ckpt["config"], epochs=config.epochs)
        if saved != dict(asdict(config)):
            changed = sorted(k for k in saved if saved[k] != asdict(config)[k])
            raise ValueError(f"`resume` with other settings than the interrupted run "
                             f"({', '.join(changed)}); use the same options")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        start_epoch = ckpt["epoch"]
        result = FinetuneResult(ckpt["history"], ckpt["best_epoch"], ckpt["best_top1"])
    if teacher is not None:
        teacher.eval()
    for epoch in range(start_epoch, config.epochs):
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train), generator=gen)[rank::world]
        net.train()
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="batch", leave=False)
        seen = correct = loss_sum = 0.0
        lr = lr_at(epoch * steps_per_epoch, steps_per_epoch, config)
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            if len(idx) == 0:
                continue
            lr = lr_at(epoch * steps_per_epoch + step, steps_per_epoch, config)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = train.images[idx], train.labels[idx]
            if config.augment:
                x = augment(x, gen)
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            if teacher is not None and config.kd_weight > 0:
                with torch.no_grad():
                    soft = F.softmax(teacher(x) / config.kd_temperature, dim=-1)
                kd = F.kl_div(F.log_softmax(logits / config.kd_temperature, dim=-1), soft,
                              reduction="batchmean") * config.kd_temperature ** 2
                loss = (1 - config.kd_weight) * loss + config.kd_weight * kd
            if not bool(torch.isfinite(loss.detach())):  # it would poison every weight
                raise ValueError(
                    f"training loss became {float(loss.detach())} at epoch {epoch + 1}, batch {step + 1} "
                    f"(learning rate {lr:.3g}): check the data for NaN/Inf or lower `lr`"
                    + ("; the best weights so far stay in " + f"'{out}.pt'"
                       if result.best_epoch else ""))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            correct += float((logits.argmax(-1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}")
        if bar is not None:
            bar.close()
        seen, correct, loss_sum = _all_sum([seen, correct, loss_sum])
        if world > 1:  # each rank's last forward moved its own BN statistics: use rank 0's,
            import torch.distributed as dist  # which are the ones saved

            for buf in model.buffers():
                dist.broadcast(buf, 0)
        metrics = evaluate(model, val)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(seen, 1),
               "train_top1": correct / max(seen, 1), "val_top1": metrics["top1"],
               "val_top5": metrics["top5"], "val_loss": metrics["loss"]}
        result.history.append(row)
        best = metrics["top1"] > result.best_top1 or result.best_epoch == 0
        if best:
            result.best_epoch, result.best_top1 = epoch + 1, metrics["top1"]
        if rank == 0:
            if best:
                from itpl.util.fileio import dump_json, staged_outputs

                with staged_outputs() as stage:
                    torch.save(model.state_dict(), stage.path(f"{out}.pt"))
                    if plan is not None:
                        with open(stage.path(f"{out}.plan.json"), "w") as f:
                            dump_json(plan, f)
            _save({"format": CHECKPOINT_FORMAT, "config": asdict(config), "epoch": epoch + 1,
                   "model": model.state_dict(), "optimizer": opt.state_dict(),
                   "rng": torch.get_rng_state(), "history": result.history,
                   "best_epoch": result.best_epoch, "best_top1": result.best_top1}, ckpt_path)
            write_json(f"{out}.history.json",
                       {"config": asdict(config), "best_epoch": result.best_epoch,
                        "best_top1": result.best_top1, "epochs": result.history})
            if progress:
                import sys

                print(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.3f}, "
                      f"train top-1 {row['train_top1']:.1%}, val top-1 {row['val_top1']:.1%}, "
                      f"top-5 {row['val_top5']:.1%}" + (" (best)" if best else ""),
                      file=sys.stderr)
        if on_epoch is not None:
            on_epoch(row)
    return result
