"""The training loop: one stage at a time, resumable, optionally distributed.

Every step is a pure function of (checkpointed state, seed, step): batches, q, beta and
the quantisation noise are drawn from generators seeded with the step number, so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..config import NUM_LEVELS, get_config
from ..errors import CrdrError
from ..fileutil import atomic_writer, folder_lock
from ..nn.weights import save_weights
from .config import TrainConfig
from .data import CropSampler, StepBatches, list_images, prefetching_loader, step_generator, to_unit
from .discriminator import MultiLevelDiscriminator
from .losses import hrrgan_discriminator_loss, hrrgan_generator_loss, mse01, rate_weight
from .trainable import TrainableCRDR, inference_model

CKPT_FORMAT = "crdr-train-checkpoint"


def _is_rate_aux(name: str) -> bool:
    return name.endswith("quantiles")


_BETA_PARTS = ("codec.g_s.embed.", ".proj.")


def _is_ica(name: str) -> bool:
    return ".ica." in name


def _is_beta_cond(name: str) -> bool:
    return any(s in name for s in _BETA_PARTS)


def _is_frozen(name: str, stage: int) -> bool:
    """Stage 1 trains a single-rate model: ICA stays the identity and beta is unused.
    Stage 2 adds rate control; beta conditioning is trained only in stage 3."""
    return (stage == 1 and _is_ica(name)) or (stage < 3 and _is_beta_cond(name))


def _legacy_group_names(flat: list[str], count: int) -> list[list[str]] | None:
    """Parameter names per optimiser group of checkpoints that did not record them:
    one group (before ICA had its own) or two (main, ICA)."""
    if count == 1:
        return [flat]
    if count == 2:
        return [[n for n in flat if not _is_ica(n)], [n for n in flat if _is_ica(n)]]
    return None


def _freeze(net: nn.Module, stage: int, train_only: tuple[str, ...] = ()) -> None:
    for name, p in net.named_parameters():
        chosen = not train_only or name.startswith(train_only)
        p.requires_grad_(chosen and not _is_frozen(name, stage))


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        stage: int,
        run_dir: str | os.PathLike,
        init: str | os.PathLike | None = None,
        device: str = "cpu",
        sampler: CropSampler | None = None,
        quiet: bool = False,
    ) -> None:
        if stage not in cfg.stages:
            raise CrdrError(f"the training config has no [stage{stage}] table")
        self.cfg, self.stage, self.st = cfg, stage, cfg.stages[stage]
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device)
        if self.device.type == "cuda":
            # fixed crop sizes: let cuDNN pick the fastest kernels; TF32 for the float32
            # parts (likelihoods, LPIPS) -- training only, coding never runs here
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.quiet = quiet
        # (first step, steps) of an lr ramp from zero (set_warmup: a run started from
        # weights alone, whose Adam moments restart)
        self.ramp: tuple[int, int] | None = None
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        torch.manual_seed(cfg.seed)
        self.net = TrainableCRDR(get_config(cfg.model)).to(self.device)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        _freeze(self.net, stage, self.st.train_only)
        if not any(p.requires_grad for p in self.net.parameters()):
            raise CrdrError(f"stage {stage}: train_only {list(self.st.train_only)} leaves nothing to train")
        self.disc = None
        if stage == 3:
            self.disc = MultiLevelDiscriminator(self.st.disc_kind, self.st.disc_width).to(self.device)
        self._lpips = None
        self.sampler = sampler
        self.step = 0
        self.skipped = 0
        self.ckpt_path = self.run_dir / f"stage{stage}.ckpt"
        self._build_optimizers()
        if self.ckpt_path.exists():
            self.load_checkpoint(self.ckpt_path)
        elif init is not None:
            self.init_from(Path(init))
        self._wrap_distributed()

    # ------------------------------------------------------------ setup
    def _build_optimizers(self) -> None:
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad and not _is_rate_aux(n)]
        groups = [
            ([(n, p) for n, p in named if not _is_ica(n) and not _is_beta_cond(n)], 1.0),
            ([(n, p) for n, p in named if _is_ica(n)], self.st.ica_lr_scale),
            ([(n, p) for n, p in named if _is_beta_cond(n)], self.st.cond_lr_scale),
        ]
        groups = [(g, scale) for g, scale in groups if g]  # frozen kinds have no group
        # lr multipliers live here, not in the optimiser's groups: a resumed checkpoint's
        # saved group settings must not override the current config
        self.lr_scales = [scale for _, scale in groups]
        self._opt_names = [[n for n, _ in g] for g, _ in groups]
        self._opt_flat_names = [n for n, _ in named]
        aux = [p for n, p in self.net.named_parameters() if _is_rate_aux(n) and p.requires_grad]
        self.opt = torch.optim.Adam([{"params": [p for _, p in g]} for g, _ in groups], lr=self.st.lr)
        # (no aux optimiser when `train_only` leaves the z prior frozen)
        self.opt_aux = torch.optim.Adam(aux, lr=1e-3) if aux else None
        self.opt_d = (
            torch.optim.Adam(self.disc.parameters(), lr=self.st.disc_lr) if self.disc is not None else None
        )

    def _wrap_distributed(self) -> None:
        self.net_ddp = self.net
        self.disc_ddp = self.disc
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # The quantiles of the z prior are trained by the aux loss only; their
            # gradients are averaged by hand in _aux_step.
            DDP._set_params_and_buffers_to_ignore_for_model(self.net, ["z_prior.quantiles"])
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net_ddp = DDP(self.net, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                self.disc_ddp = DDP(self.disc, device_ids=ids, find_unused_parameters=True)
        # The compiled forward is only a faster way to call the same module: checkpoints
        # and exports always use self.net.
        self.forward_fn = torch.compile(self.net_ddp) if self.cfg.compile else self.net_ddp

    def lpips(self):
        if self._lpips is None:
            from ..metrics.lpips import LPIPS

            self._lpips = LPIPS(self.cfg.lpips_net).to(self.device)
        return self._lpips

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "format": CKPT_FORMAT,
            "stage": self.stage,
            "step": self.step,
            "skipped": self.skipped,
            "train_config": _config_dict(self.cfg),
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "opt_names": self._opt_names,
            "opt_aux": self.opt_aux.state_dict() if self.opt_aux is not None else None,
            "disc": self.disc.state_dict() if self.disc is not None else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
        }

    def save_checkpoint(self, path: Path | None = None) -> None:
        if self.rank != 0:
            return
        with atomic_writer(path or self.ckpt_path) as tmp:
            torch.save(self.state(), tmp)

    def load_checkpoint(self, path: Path) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=True)
        if ck.get("format") != CKPT_FORMAT or ck.get("stage") != self.stage:
            raise CrdrError(f"{path}: not a stage-{self.stage} training checkpoint")
        self.net.load_state_dict(ck["net"])
        self.opt.load_state_dict(self._regroup(ck["opt"], ck.get("opt_names")))
        if self.opt_aux is not None and ck.get("opt_aux") is not None:
            self.opt_aux.load_state_dict(ck["opt_aux"])
        if self.disc is not None and ck.get("disc") is not None:
            self.disc.load_state_dict(ck["disc"])
            self.opt_d.load_state_dict(ck["opt_d"])
        self.step, self.skipped = ck["step"], ck["skipped"]
        self._log(f"resumed stage {self.stage} from {path} at step {self.step}")

    def _regroup(self, saved: dict, names: list[list[str]] | None) -> dict:
        """A saved optimiser state in this optimiser's grouping, matched by parameter name
        (the grouping changes when a kind of parameter gets its own lr multiplier)."""
        if names is None:
            names = _legacy_group_names(self._opt_flat_names, len(saved["param_groups"]))
        if names is None or names == self._opt_names:
            return saved
        # The network itself was loaded strictly, so names differ only when the trainable
        # set changed (e.g. a fork with `train_only`): parameters no longer trained drop
        # their moments, newly trained ones start without any.
        ids = {n: i for g, grp in zip(names, saved["param_groups"]) for n, i in zip(g, grp["params"])}
        state, groups, i = {}, [], 0
        for group in self._opt_names:
            for n in group:
                if ids.get(n) in saved["state"]:
                    state[i] = saved["state"][ids[n]]
                i += 1
            groups.append({**saved["param_groups"][0], "params": list(range(i - len(group), i))})
        return {"state": state, "param_groups": groups}

    def init_from(self, path: Path) -> None:
        """Start this stage from a previous stage's checkpoint or an inference weights file."""
        if not path.is_file():
            raise CrdrError(f"--init file not found: {path}")
        ck = torch.load(path, map_location=self.device, weights_only=True)
        if ck.get("format") == CKPT_FORMAT:
            state, source_stage, optional = ck["net"], ck.get("stage"), ()
        elif ck.get("format") == "crdr-weights":
            state = {f"codec.{k}": v.float() for k, v in ck["state_dict"].items()}
            if "z_prior" in ck.get("meta", {}):
                state.update({f"z_prior.{k}": v for k, v in ck["meta"]["z_prior"].items()})
            meta = ck.get("meta", {})
            source_stage, optional = meta.get("stage"), ("z_prior", "y_prior")
            if source_stage == self.stage:
                # Exported mid-stage (e.g. the shipped weights on a new machine): continue
                # that stage's schedule where it was; only the optimiser state restarts.
                self.step = int(meta.get("step", 0))
        else:
            raise CrdrError(f"{path}: neither a training checkpoint nor a weights file")
        # The beta conditioning is untrained (frozen) before stage 3, and stage 3 starts
        # it afresh as the identity (the reference, too, initialises it at stage 3): an
        # earlier stage's file has nothing to give it, and its shape may differ (the
        # number of Fourier bands changed after the first lite weights shipped).
        untrained_cond = source_stage is not None and source_stage < 3
        if untrained_cond:
            state = {k: v for k, v in state.items() if not _is_beta_cond(k)}
            optional = (*optional, *_BETA_PARTS)
        own = self.net.state_dict()
        missing = [k for k in own if k not in state and not any(s in k for s in optional)]
        if missing or any(k not in own or v.shape != own[k].shape for k, v in state.items()):
            raise CrdrError(f"{path}: weights do not match the '{self.cfg.model}' model")
        self.net.load_state_dict(state, strict=False)
        if untrained_cond and self.stage == 3:
            self.net.codec.g_s.reset_beta_conditioning()
        self._log(f"stage {self.stage} initialised from {path}")

    def export(self, path: str | os.PathLike, half: bool = True) -> bytes:
        """Write inference weights; the integer entropy model is calibrated on the
        validation images (synthetic images when there are none)."""
        from ..image_io import read_image
        from ..nn.model import image_calibration

        model = inference_model(self.net).cpu()
        meta = {
            "stage": self.stage,
            "step": self.step,
            "z_prior": {k: v.detach().cpu() for k, v in self.net.z_prior.state_dict().items()},
        }
        files = list_images([self.cfg.val_data])[: self.cfg.val_images] if self.cfg.val_data else []
        calib = image_calibration(model, [read_image(f) for f in files]) if files else None
        return save_weights(path, model, half=half, meta=meta, calib=calib)

    # ------------------------------------------------------------ one step
    def _sample_controls(self, g: torch.Generator) -> tuple[int, float]:
        st = self.st
        if self.stage == 1:
            level = NUM_LEVELS - 1
        else:
            level = int(torch.randint(0, NUM_LEVELS, (1,), generator=g))
        beta = 0.0
        if self.stage == 3 and st.beta_max > 0:
            grid = int(torch.randint(0, 101, (1,), generator=g))
            if float(torch.rand((), generator=g)) >= st.beta_zero_prob:
                beta = grid / 100 * st.beta_max
        return level, beta

    def train_step(self, batch: torch.Tensor | None = None) -> dict[str, float]:
        """One generator (+ aux, + discriminator) step. ``batch`` is this step's data when
        prepared ahead by workers; it must equal what the sampler would draw."""
        st, cfg, dev = self.st, self.cfg, self.device
        step = self.step
        lpips = self.lpips() if st.lambda_p > 0 else None  # built before seeding: it draws RNG
        g_ctrl = step_generator(cfg.seed, step, rank=0)  # same q and beta on every rank
        torch.manual_seed((cfg.seed * 7919 + step) * 131 + self.rank)  # quantisation noise
        level, beta = self._sample_controls(g_ctrl)
        crop, batch_size = st.crop_at(step)
        if batch is None:  # the same step -> batch mapping the prefetching workers use
            batch = StepBatches(self.sampler, st.crop_at, cfg.seed + 1, self.rank)[step]
        # workers hand over uint8 (pinned for CUDA): copied without waiting, converted there
        x = to_unit(batch.to(dev, non_blocking=True))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ramp = 1.0
        if self.ramp is not None and self.ramp[1] > 0:
            ramp = min(1.0, max(0, step - self.ramp[0] + 1) / self.ramp[1])
        for grp, scale in zip(self.opt.param_groups, self.lr_scales):
            grp["lr"] = st.lr_at(step) * scale * ramp
        if self.opt_d is not None:
            for grp in self.opt_d.param_groups:
                grp["lr"] = st.disc_lr * (st.lr_decay if step >= st.lr_decay_at * st.steps else 1.0)
        qt = torch.full((batch_size,), float(level), device=dev)
        bt = torch.full((batch_size,), float(beta), device=dev)
        ac = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cfg.bf16)

        with ac:
            out = self.forward_fn(x, qt, bt)
        idx = min(level, len(st.rate_targets) - 1)
        # the switched rate weight chosen on the device: no wait for the GPU here
        lam = rate_weight(out.bpp, st.rate_targets[idx], st.rate_lambda_a[idx], st.rate_lambda_b)
        mse = mse01(out.x_hat, x)
        loss = lam * out.bpp + st.lambda_d * mse
        logs = {"level": level, "beta": beta, "crop": crop}
        parts = {"bpp": out.bpp, "mse": mse}
        if self.stage < 3:
            if lpips is not None:
                lp = lpips(out.x_hat, x).mean()
                loss = loss + st.lambda_p * lp
                parts["lpips"] = lp
        elif beta > 0:
            lp = lpips(out.x_hat, x).mean() if lpips is not None else torch.zeros((), device=dev)
            with torch.no_grad(), ac:
                ref = x if level == NUM_LEVELS - 1 else self.net(x, qt + 1, bt).x_hat.float()
            d = self.disc
            d.requires_grad_(False)
            with ac:
                adv = hrrgan_generator_loss(d(out.x_hat, level).float(), d(ref, level).float())
            d.requires_grad_(True)
            loss = loss + beta * (st.lambda_p * lp + st.lambda_adv * adv)
            parts.update(lpips=lp, adv=adv)

        # one transfer from the device for every logged number (and the loss check)
        values = torch.stack([loss.detach().float()] + [v.detach().float() for v in parts.values()]).tolist()
        lv = values[0]
        logs.update(zip(parts, values[1:]))
        if not math.isfinite(lv) or lv > 1e4:
            self.skipped += 1
            self.opt.zero_grad(set_to_none=True)
            logs.update(loss=lv, skipped=1)
            self.step += 1
            return logs
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if st.clip_grad > 0:
            # only the main optimiser's parameters: the z prior's quantiles carry the aux
            # loss's gradient, which must not change the codec's clipping factor
            nn.utils.clip_grad_norm_(
                [p for g in self.opt.param_groups for p in g["params"] if p.grad is not None],
                st.clip_grad,
            )
        self.opt.step()
        self._aux_step()
        if self.disc is not None:
            logs["d_loss"] = self._disc_step(x, out.x_hat.detach(), level, ac)
        logs.update(loss=lv, lr=self.opt.param_groups[0]["lr"])
        self.step += 1
        return logs

    def _aux_step(self) -> None:
        if self.opt_aux is None:
            return
        self.opt_aux.zero_grad(set_to_none=True)
        aux = self.net.aux_loss()
        aux.backward()
        if self.world > 1:
            q = self.net.z_prior.quantiles
            dist.all_reduce(q.grad)
            q.grad /= self.world
        self.opt_aux.step()

    def _disc_step(self, x, x_hat, level, ac) -> float:
        self.opt_d.zero_grad(set_to_none=True)
        with ac:
            d_real = self.disc_ddp(x, level).float()
            d_fake = self.disc_ddp(x_hat, level).float()
        loss = hrrgan_discriminator_loss(d_real, d_fake)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    # ------------------------------------------------------------ the run
    def run(self, max_steps: int | None = None, max_minutes: float | None = None,
            budget_minutes: float | None = None, decay_share: float = 0.2,
            budget_start: float | None = None) -> None:
        """Train until the stage's step count (or a limit) is reached; checkpoint on the way.

        ``budget_minutes`` makes the run time-boxed (see :class:`TimeBox`): the stage's
        last step is set from the measured step time so that training ends within that
        many minutes, with the last ``decay_share`` of this run's steps at lr x lr_decay;
        the preset's own step count and lr drop are replaced. The budget counts from
        ``budget_start`` (a time.time() value; default: now), so a caller can put its own
        start-up (loading, data decoding) inside it.

        One training process per run folder (rank 0 holds its lock): a second one started by
        mistake stops with an error instead of overwriting the first one's checkpoints."""
        with folder_lock(self.run_dir, "crdr train") if self.rank == 0 else contextlib.nullcontext():
            self._run(max_steps, max_minutes, budget_minutes, decay_share, budget_start)

    def set_warmup(self, steps: int) -> None:
        """Ramp the lr up linearly over the next ``steps`` steps from the current one."""
        self.ramp = (self.step, steps) if steps > 0 else None

    def set_schedule(self, steps: int, decay_step: int) -> None:
        """Replace this stage's last step and lr drop (recorded in later checkpoints)."""
        at = min(1.0, (decay_step - 0.5) / steps) if steps > 0 else 1.0
        self.st = dataclasses.replace(self.st, steps=steps, lr_decay_at=at)
        self.cfg = dataclasses.replace(self.cfg, stages={**self.cfg.stages, self.stage: self.st})

    def _run(self, max_steps: int | None, max_minutes: float | None,
             budget_minutes: float | None = None, decay_share: float = 0.2,
             budget_start: float | None = None) -> None:
        cfg = self.cfg
        if self.sampler is None:
            self.sampler = CropSampler(list_images(cfg.data, cfg.data_exclude), cache=cfg.cache_images)
        t_start = last_ckpt = time.time()
        deadline = math.inf if max_minutes is None else t_start + max_minutes * 60
        box = None
        if budget_minutes is not None:
            b0 = t_start if budget_start is None else min(budget_start, t_start)
            box = TimeBox(self, budget_minutes * 60 - (t_start - b0), decay_share, t_start)
            deadline = min(deadline, b0 + budget_minutes * 60)
        st = self.st
        cap = math.inf if max_steps is None else self.step + max_steps
        end = min(st.steps, cap)
        stop = _StopFlag()  # SIGTERM / SIGINT: finish the step, checkpoint, exit cleanly
        log_path = self.run_dir / "log.csv"
        bar = _progress(self.step, end, self.quiet or self.rank != 0)
        tb = _tensorboard(self.run_dir) if self.rank == 0 else None
        batches = None
        if cfg.workers > 0:
            ds = StepBatches(self.sampler, st.crop_at, cfg.seed + 1, self.rank, raw=True)
            batches = prefetching_loader(ds, self.step, end, cfg.workers,
                                         pin_memory=self.device.type == "cuda",
                                         prefetch=4 if self.device.type == "cuda" else 2)
        while self.step < end:
            t0 = time.time()
            logs = self.train_step(next(batches) if batches is not None else None)
            logs["sec"] = time.time() - t0
            if box is not None and box.update(time.time()):
                end = min(self.st.steps, cap)
                bar.set_end(end)
            if self.rank == 0:
                bar.update(logs)
                if self.step % cfg.log_every == 0 or self.step == end:
                    _append_csv(log_path, {"stage": self.stage, "step": self.step, **logs})
                    if tb is not None:
                        for k, v in logs.items():
                            tb.add_scalar(f"stage{self.stage}/{k}", v, self.step)
            now = time.time()
            if (
                self.step % cfg.ckpt_every_steps == 0
                or now - last_ckpt > cfg.ckpt_every_minutes * 60
                or self.step == end
            ):
                self.save_checkpoint()
                last_ckpt = now
            if cfg.val_every and self.step % cfg.val_every == 0 and self.rank == 0 and cfg.val_data:
                self.validate()
            if self._all_agree_to_stop(
                stop.raised or now > deadline
            ):
                self.save_checkpoint()
                if stop.raised:
                    self._log(f"stopped by signal at step {self.step}; checkpoint saved")
                break
        if self.step >= self.st.steps and not self.ckpt_path.exists():
            # e.g. weights exported at the end of this stage: the next stage starts from here
            self.save_checkpoint()
        stop.restore()
        bar.close()
        if tb is not None:
            tb.close()
        if self.skipped:
            self._log(f"{self.skipped} step{'s' * (self.skipped != 1)} with non-finite or huge "
                      f"loss {'were' if self.skipped != 1 else 'was'} skipped")

    def _all_agree_to_stop(self, mine: bool) -> bool:
        """Under DDP, a stop wanted by any rank (signal, time limit) stops every rank at the
        same step; otherwise the others would wait forever in the next gradient all-reduce."""
        if self.world == 1:
            return mine
        flag = torch.tensor([float(mine)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @torch.no_grad()
    def validate(self) -> list[dict]:
        """Real bitstreams on the first val images: bpp from bytes, PSNR, LPIPS."""
        from ..codec import Codec
        from ..image_io import read_image, to_tensor
        from ..metrics.basic import psnr

        files = list_images([self.cfg.val_data])[: self.cfg.val_images]
        model = inference_model(self.net).cpu()
        from ..nn.weights import model_to_record, record_fingerprint

        rec = model_to_record(model, half=False)
        codec = Codec(model=model, fingerprint=record_fingerprint(rec), device="cpu")
        levels = [NUM_LEVELS - 1] if self.stage == 1 else [0, 2, 4]
        betas = [0.0, 3.84] if self.stage == 3 else [0.0]
        lp = self.lpips().cpu()
        rows = []
        for q in levels:
            for beta in betas:
                bpps, psnrs, lps = [], [], []
                for f in files:
                    rgb = read_image(f)
                    data = codec.encode(rgb, q).data
                    rec_rgb = codec.decode(data, beta)
                    bpps.append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
                    psnrs.append(psnr(rgb, rec_rgb))
                    lps.append(lp(to_tensor(rec_rgb), to_tensor(rgb)).item())
                n = len(files)
                rows.append({"stage": self.stage, "step": self.step, "q": q, "beta": beta,
                             "bpp": sum(bpps) / n, "psnr": sum(psnrs) / n, "lpips": sum(lps) / n})
        self._lpips = lp.to(self.device)
        for r in rows:
            _append_csv(self.run_dir / "val.csv", r)
            self._log("val " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
        self.net.to(self.device)
        return rows

    def _log(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(msg, file=sys.stderr, flush=True)


class TimeBox:
    """Fits a stage's last step to a wall-clock budget (``crdr train --budget-minutes``).

    Until the first fit the schedule is open-ended at the full lr. The first ``warmup``
    steps are not timed (CUDA kernel selection, allocator growth, data workers starting);
    after that the wall time per step (checkpoints and logging included) is measured, and
    once 10 % of the budget has been timed the last step is set so that training ends
    within the budget (3 % to spare), with the last ``decay_share`` of this run's steps at
    lr x lr_decay. The fit is repeated every further 10 % of the budget while the lr drop
    is still ahead, so a drift in step time moves the end; once the drop has begun the
    end stays. The hard stop at the budget applies in any case (the caller's max_minutes).
    """

    def __init__(self, trainer: Trainer, seconds: float, decay_share: float, t0: float,
                 warmup: int = 3) -> None:
        if trainer.world > 1:
            raise CrdrError("--budget-minutes runs in one process only (no torchrun)")
        if not 0 <= decay_share < 1:
            raise CrdrError("the decayed share of a time-boxed run must lie in [0, 1)")
        self.tr, self.seconds, self.share, self.t0 = trainer, seconds, decay_share, t0
        self.start = trainer.step
        self.warmup = warmup
        self.mark: tuple[float, int] | None = None
        self.next_fit = math.inf
        self.decay_step = math.inf
        far = trainer.step + 10**9
        trainer.set_schedule(far, far)  # open-ended, full lr, until the first fit

    def update(self, now: float) -> bool:
        """Call after every step; True when the schedule (the last step) changed."""
        tr = self.tr
        if self.mark is None:
            if tr.step - self.start >= self.warmup:
                self.mark = (now, tr.step)
                self.next_fit = now + 0.1 * self.seconds
            return False
        if now < self.next_fit or tr.step >= self.decay_step or tr.step <= self.mark[1]:
            return False
        per_step = (now - self.mark[0]) / (tr.step - self.mark[1])
        left = self.t0 + self.seconds - now
        end = tr.step + max(0, int(0.97 * left / per_step))
        self.decay_step = max(tr.step, self.start + math.ceil((1 - self.share) * (end - self.start)))
        tr.set_schedule(end, self.decay_step)
        self.next_fit = now + 0.1 * self.seconds
        tr._log(f"time box: {per_step:.3f} s/step, last step {end}, lr drop at step {self.decay_step}")
        return True


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        import signal
        import threading

        self.raised = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _tensorboard(run_dir: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _config_dict(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["stages"] = {str(k): dataclasses.asdict(v) for k, v in cfg.stages.items()}
    return d


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    keys = ["stage", "step", "level", "beta", "crop", "loss", "bpp", "mse", "lpips", "adv",
            "d_loss", "lr", "sec", "skipped", "q", "psnr"]
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


class _progress:
    """A one-line progress display: rate, loss parts, bpp and PSNR (tqdm if available)."""

    def __init__(self, start: int, end: int, disabled: bool) -> None:
        self.disabled = disabled
        self.bar = None
        self.n, self.end = start, end
        self.ema: dict[str, float] = {}
        self.t = time.time()
        if not disabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=end, initial=start, dynamic_ncols=True, file=sys.stderr,
                                mininterval=2.0)
            except ImportError:
                pass

    def update(self, logs: dict) -> None:
        self.n += 1
        for k in ("loss", "bpp", "mse", "lpips", "sec"):
            if k in logs and math.isfinite(logs[k]):
                self.ema[k] = 0.9 * self.ema.get(k, logs[k]) + 0.1 * logs[k]
        if self.disabled:
            return
        psnr = -10 * math.log10(max(self.ema.get("mse", 1.0), 1e-10))
        post = f"loss {self.ema.get('loss', 0):.3f} bpp {self.ema.get('bpp', 0):.3f} psnr {psnr:.2f}"
        if "lpips" in self.ema:
            post += f" lpips {self.ema['lpips']:.3f}"
        if self.bar is not None:
            self.bar.set_postfix_str(post, refresh=False)
            self.bar.update(1)
        elif self.n % 50 == 0:
            print(f"step {self.n}/{self.end} {post}", file=sys.stderr, flush=True)

    def set_end(self, end: int) -> None:
        self.end = end
        if self.bar is not None:
            self.bar.total = end
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
