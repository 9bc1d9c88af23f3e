"""Pretraining: the loop around the model.

    result = pretrain(PretrainConfig(...))      # or: fastllm pretrain --config configs/pretrain/tiny.yaml
    torchrun --nproc_per_node 2 -m fastllm pretrain --config ...   # DDP (or --parallel=fsdp)

Per optimizer step: learning rate from the schedule; `grad_accum` micro-batches of random windows
(gradient sync only on the last); the loss averaged over processes; the global gradient norm,
clipped; if the loss or the norm is not finite the update is skipped (or the run halts) so the
weights never see it; AdamW. Around it: periodic validation, checkpoints with exact resume,
metrics.jsonl, loss.png, a progress bar and a summary. The model code itself stays single-device;
DDP/FSDP2, torch.compile, activation checkpointing and bf16 autocast are applied here.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint as recompute

from fastllm.cli.config_io import to_dict
from fastllm.model.config import ModelConfig
from fastllm.model.hf_io import save_pretrained
from fastllm.model.llama import Llama, cross_entropy
from fastllm.train import checkpoint, distributed, rng
from fastllm.train.config import PretrainConfig
from fastllm.train.data import WindowSampler, check_token_ids, eval_windows, open_shards
from fastllm.train.metrics import MetricsLog, peak_flops, plot_losses, summary
from fastllm.train.optim import build_optimizer, set_learning_rate
from fastllm.train.schedule import learning_rate
from fastllm.utils.errors import ConfigError, FastLLMError
from fastllm.utils.progress import progress


class TrainingHalted(FastLLMError):
    """Training stopped on a non-finite loss or gradient (weights are left as of the last good step)."""


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    tokens: int
    seconds: float
    train_loss: float
    val_loss: float | None
    skipped_steps: int
    model_dir: Path | None
    losses: list[float] = field(default_factory=list)  # per step of this process's run


def pretrain(config: PretrainConfig) -> TrainResult:
    trainer = Trainer(config)
    result = trainer.run()
    # Only after success: tearing a group down while a failed peer is mid-collective hangs;
    # on failure torchrun stops the other processes.
    distributed.teardown(trainer.dist)
    return result


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """torch's deterministic-algorithms mode on while the block runs (when `enabled`), then as before."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def enable_activation_checkpointing(model: Llama) -> None:
    """Each block's activations are recomputed in backward instead of stored."""
    for block in model.model.layers:
        block.forward = _recomputed(block.forward)


def _recomputed(forward):
    def run(*args, **kwargs):
        return recompute(forward, *args, use_reentrant=False, **kwargs)

    return run


class _Silent:
    """The progress bar of non-main processes."""

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


class Trainer:
    def __init__(self, config: PretrainConfig):
        self.cfg = config
        self.dist = distributed.setup(config.device)
        self.device = self.dist.device
        self.accum = self._grad_accum()
        self.shards = open_shards(config.data.shards)
        self.model_config = self._model_config()
        self.tokenizer_path = self._check_tokenizer()
        self.sampler = WindowSampler(self.shards.split("train"), config.data.seq_len, seed=config.seed,
                                     where=f"{config.data.shards} (train split)", vocab_size=self.shards.vocab_size)
        self.val = eval_windows(self.shards.split("val"), config.data.seq_len, config.eval_tokens) \
            if config.eval_tokens else torch.empty(0, config.data.seq_len + 1, dtype=torch.long)
        check_token_ids(self.val.numpy(), self.shards.vocab_size, f"{config.data.shards} (val split)")
        if config.eval_tokens and len(self.val) == 0:
            raise ConfigError(f"{config.data.shards}: the validation split has no window of {config.data.seq_len + 1} "
                              "tokens; prepare a validation split or set eval_tokens=0")
        torch.manual_seed(config.seed)  # identical initial weights on every process
        self.model = Llama(self.model_config).to(self.device)
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.wrapped = distributed.wrap(self.model, self.dist, config.parallel)
        if config.compile:
            self.wrapped.compile()
        self.optimizer = build_optimizer(self.model, config.optim, self.device)
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.ckpt_root = config.out_dir / "ckpt"
        # Counters of the run so far; checkpoints carry them so a resumed run continues them.
        self.start_step, self.tokens_seen, self.skipped, self.consecutive_skips = 0, 0, 0, 0
        resumed = self._resume() if config.resume else None
        self.metrics = MetricsLog(config.out_dir / "metrics.jsonl", resume_step=resumed, enabled=self.dist.is_main)

    # ---- setup ----

    def _grad_accum(self) -> int:
        try:
            return self.cfg.grad_accum(self.dist.world_size)
        except ValueError as exc:
            raise ConfigError(f"pretrain config: {exc}") from None

    def _model_config(self) -> ModelConfig:
        cfg, shards = self.cfg, self.shards
        try:
            model_config = cfg.model.resolve(vocab_size=shards.vocab_size, seq_len=cfg.data.seq_len, eos_id=shards.eos_id)
        except ValueError as exc:
            raise ConfigError(f"pretrain config (model): {exc}") from None
        if model_config.vocab_size < shards.vocab_size:
            raise ConfigError(f"{shards.path}/index.json: the shards use {shards.vocab_size} token ids but "
                              f"model.vocab_size is {model_config.vocab_size}; raise it or leave it unset")
        if cfg.data.seq_len > model_config.max_seq_len:
            raise ConfigError(f"pretrain config: data.seq_len {cfg.data.seq_len} exceeds model.max_seq_len "
                              f"{model_config.max_seq_len}")
        return model_config

    def _check_tokenizer(self) -> Path | None:
        """The tokenizer to ship with the model (data.tokenizer, else the one fastllm prepare left
        beside the shards), checked against the shards' tokenizer hash."""
        path = self.cfg.data.tokenizer
        if path is None and (self.shards.path / "tokenizer.json").is_file():
            path = self.shards.path / "tokenizer.json"
        if path is None:
            return None
        from fastllm.tokenizer import Tokenizer

        ours = Tokenizer.from_file(path).hash()
        if ours != self.shards.tokenizer_hash:
            raise ConfigError(f"{self.shards.path}/index.json: the shards were tokenized with tokenizer "
                              f"{self.shards.tokenizer_hash[:12]}, but {path} is {ours[:12]}; re-run fastllm prepare "
                              "with this tokenizer or pass the one the shards were made with")
        return path

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)

    # ---- one optimizer step ----

    def _autocast(self):
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_loss(self, batch: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return cross_entropy(self.wrapped(batch[:, :-1]), batch[:, 1:])

    def train_step(self, step: int) -> tuple[float, float, bool]:
        """Runs optimizer step `step`; returns (loss, grad norm, applied)."""
        cfg = self.cfg
        set_learning_rate(self.optimizer, learning_rate(step, cfg.steps, cfg.optim))
        per_rank = cfg.batch_size // self.dist.world_size
        total = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            first = self.dist.rank * per_rank + micro * cfg.micro_batch
            batch = self.sampler.batch(step, cfg.batch_size, slice(first, first + cfg.micro_batch))
            with distributed.no_grad_sync(self.wrapped, skip=micro < self.accum - 1):
                loss = self.forward_loss(batch.to(self.device, non_blocking=True))
                (loss / self.accum).backward()
            total += loss.detach().float()
        loss = distributed.all_reduce_mean(total / self.accum, self.dist).item()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip or math.inf)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        applied = math.isfinite(loss) and math.isfinite(norm)
        if applied:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, norm, applied

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss over the fixed validation windows (split over processes; every
        process runs the same number of batches, padding with zero-weight windows)."""
        self.wrapped.eval()
        world, rank, micro = self.dist.world_size, self.dist.rank, self.cfg.micro_batch
        per_rank = -(-len(self.val) // world)
        indices = [rank + world * i for i in range(per_rank)]
        sums = torch.zeros(2, dtype=torch.float64)
        for start in range(0, per_rank, micro):
            chunk = indices[start:start + micro]
            weights = torch.tensor([1.0 if i < len(self.val) else 0.0 for i in chunk], dtype=torch.float64)
            batch = self.val[[i if i < len(self.val) else 0 for i in chunk]].to(self.device)
            with self._autocast():
                logits = self.wrapped(batch[:, :-1])
            per_window = torch.nn.functional.cross_entropy(
                logits.float().transpose(1, 2), batch[:, 1:], reduction="none").mean(1).double().cpu()
            sums += torch.stack([(per_window * weights).sum(), weights.sum()])
        self.wrapped.train()
        sums = distributed.all_reduce_sum(sums.to(self.device if self.device.type == "cuda" else "cpu"), self.dist)
        return float(sums[0] / sums[1])

    # ---- the run ----

    def run(self) -> TrainResult:
        """Trains to cfg.steps (deterministic algorithms on meanwhile when cfg.deterministic)."""
        with deterministic_algorithms(self.cfg.deterministic):
            return self._run()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        tokens_per_step = cfg.batch_size * cfg.data.seq_len
        flops_per_token = self.model_config.flops_per_token(cfg.data.seq_len)
        peak = peak_flops(self.device)
        self.say(f"model: {self.model.num_params() / 1e6:.2f}M parameters, {self.dist.world_size} process(es), "
                 f"grad_accum {self.accum}, {'bf16 autocast' if self.bf16 else 'fp32'} on {self.device}")
        bar = progress(total=cfg.steps, initial=self.start_step, desc="pretrain", unit="step") \
            if self.dist.is_main else _Silent()
        losses: list[float] = []
        val_loss = None
        start_time = window_start = time.perf_counter()
        window_tokens = 0
        for step in range(self.start_step, cfg.steps):
            loss, norm, applied = self.train_step(step)
            losses.append(loss)
            self.tokens_seen += tokens_per_step
            window_tokens += tokens_per_step
            if not applied:
                self.skipped += 1
                self.consecutive_skips += 1
                self.say(f"step {step + 1}: non-finite loss {loss} or gradient norm {norm}; update skipped")
                if cfg.on_nonfinite == "halt" or self.consecutive_skips > cfg.max_skips:
                    raise TrainingHalted(f"{cfg.out_dir}: non-finite loss/gradient at step {step + 1} "
                                         f"({self.consecutive_skips} in a row); weights are those of the last good "
                                         "step; lower optim.lr or check the data")
            else:
                self.consecutive_skips = 0
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                elapsed = time.perf_counter() - window_start
                rate = window_tokens / max(elapsed, 1e-9)
                record = {"step": done, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": norm,
                          "tokens": self.tokens_seen, "tokens_per_s": rate, "skipped": self.skipped}
                if peak:
                    record["mfu"] = rate * flops_per_token / (peak * self.dist.world_size)
                self.metrics.log(record)
                window_start, window_tokens = time.perf_counter(), 0
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{rate:,.0f}",
                                **({"mfu": f"{record['mfu']:.1%}"} if peak else {}), refresh=False)
            if len(self.val) and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps):
                val_loss = self.evaluate()
                self.metrics.log({"step": done, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))})
            if (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps:
                self.save(done)
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - start_time
        model_dir = self._save_model() if cfg.save_model else None
        # A resumed run that had nothing left to do reports the numbers its log ends with.
        logged = self.metrics.records
        train_loss = losses[-1] if losses else next((r["loss"] for r in reversed(logged) if "loss" in r), math.nan)
        if val_loss is None:
            val_loss = next((r["val_loss"] for r in reversed(logged) if "val_loss" in r), None)
        result = TrainResult(cfg.out_dir, cfg.steps, self.tokens_seen, seconds, train_loss, val_loss, self.skipped,
                             model_dir, losses)
        if self.dist.is_main:
            plot_losses(self.metrics.records, cfg.out_dir / "loss.png")
            print(self._summary(result, len(losses) * tokens_per_step))
        return result

    # ---- checkpoints ----

    def save(self, step: int) -> None:
        model_state, optim_state = distributed.full_state(self.wrapped, self.optimizer)
        states = distributed.all_gather_objects(rng.capture(), self.dist)
        if self.dist.is_main:
            if self.model_config.tie_embeddings:
                model_state.pop("lm_head.weight", None)
            optim_tensors, optim_groups = checkpoint.flatten_optimizer(optim_state)
            rng_tensors, rng_json = rng.to_storage(states)
            state = {"step": step, "world_size": self.dist.world_size, "tokens_seen": self.tokens_seen,
                     "skipped_steps": self.skipped, "consecutive_skips": self.consecutive_skips,
                     "model_config": self.model_config.to_hf(),
                     "tokenizer_hash": self.shards.tokenizer_hash,
                     "data": {"sampler": "random-windows-v1", "seed": self.cfg.seed, "next_step": step,
                              "shards": str(self.shards.path), "seq_len": self.cfg.data.seq_len},
                     "optimizer_groups": optim_groups, "rng": rng_json, "config": to_dict(self.cfg)}
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
            checkpoint.save(self.ckpt_root, step, {"model": model_state, "optimizer": optim_tensors, "rng": rng_tensors},
                            state, self.cfg.keep_last)
        distributed.barrier(self.dist)

    def _resume(self) -> int | None:
        found = checkpoint.latest_complete(self.ckpt_root, self.say)
        if found is None:
            self.say(f"no complete checkpoint in {self.ckpt_root}; starting from step 0")
            return None
        tensors, state = checkpoint.load(found, verified=True)
        self._check_compatible(found, state)
        model_state = dict(tensors["model"])
        if self.model_config.tie_embeddings:
            model_state["lm_head.weight"] = model_state["model.embed_tokens.weight"]
        optim_state = checkpoint.unflatten_optimizer(tensors["optimizer"], state["optimizer_groups"])
        distributed.load_full_state(self.wrapped, self.optimizer, model_state, optim_state)
        rng.restore(self.dist.rank, tensors["rng"], state["rng"])
        self.start_step, self.tokens_seen, self.skipped = state["step"], state["tokens_seen"], state["skipped_steps"]
        self.consecutive_skips = state.get("consecutive_skips", 0)
        self.say(f"resumed from {found} (step {self.start_step})")
        return self.start_step

    def _check_compatible(self, found: Path, state: dict) -> None:
        where = found / "state.json"
        if state["world_size"] != self.dist.world_size:
            raise ConfigError(f"{where}: written by {state['world_size']} process(es), this run has "
                              f"{self.dist.world_size}; resume with the same number of processes")
        saved = ModelConfig.from_hf(state["model_config"], where=str(where))
        if saved != self.model_config:
            diff = [f"{k}={getattr(saved, k)}" for k in vars(saved) if getattr(saved, k) != getattr(self.model_config, k)]
            raise ConfigError(f"{where}: checkpoint of a different architecture ({', '.join(diff)}); "
                              "use the model settings it was trained with or a new out_dir")
        if state["tokenizer_hash"] != self.shards.tokenizer_hash:
            raise ConfigError(f"{where}: trained on tokenizer {state['tokenizer_hash'][:12]}, the shards in "
                              f"{self.shards.path} use {self.shards.tokenizer_hash[:12]}")
        # The data windows and the learning rate of a step depend on these; a change is allowed
        # (e.g. more steps), but the run then differs from an uninterrupted one.
        saved, now = state["config"], to_dict(self.cfg)
        changed = [key for key in ("seed", "steps", "batch_size", "optim") if saved.get(key) != now[key]]
        changed += ["data.seq_len"] if saved.get("data", {}).get("seq_len") != self.cfg.data.seq_len else []
        if changed:
            self.say(f"note: {', '.join(changed)} changed since {where}; the resumed run will not match an "
                     "uninterrupted run of either setting")

    def _save_model(self) -> Path | None:
        model_state, _ = distributed.full_state(self.wrapped, self.optimizer)
        out = self.cfg.out_dir / "model"
        if self.dist.is_main:
            if self.dist.enabled:
                model = Llama.empty(self.model_config)
                model.load_state_dict(model_state)
            else:
                model = self.model
            save_pretrained(model, out, tokenizer=self.tokenizer_path)
        distributed.barrier(self.dist)
        return out

    def _summary(self, result: TrainResult, tokens_this_run: int) -> str:
        rows = [("model", f"{self.cfg.model.preset} ({self.model.num_params() / 1e6:.2f}M parameters)"),
                ("data", f"{self.shards.num_tokens('train'):,} train / {self.shards.num_tokens('val'):,} val tokens"),
                ("steps", f"{result.steps} ({self.start_step} resumed), {self.skipped} skipped"),
                ("tokens", f"{result.tokens:,}"),
                ("time", f"{result.seconds:.1f}s, {tokens_this_run / max(result.seconds, 1e-9):,.0f} tokens/s"),
                ("train loss", f"{result.train_loss:.4f}")]
        if result.val_loss is not None:
            rows.append(("val loss", f"{result.val_loss:.4f} (perplexity {math.exp(min(result.val_loss, 50)):.2f})"))
        rows += [("checkpoints", str(self.ckpt_root)), ("metrics", str(self.cfg.out_dir / "metrics.jsonl")),
                 ("loss curve", str(self.cfg.out_dir / "loss.png"))]
        if result.model_dir:
            rows.append(("model dir", f"{result.model_dir} (transformers-loadable)"))
        return summary(rows)
