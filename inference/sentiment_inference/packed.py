"""A packed (padding-free) DistilBERT sequence classifier: the server's fast path for DistilBERT checkpoints.

It computes exactly what transformers' ``DistilBertForSequenceClassification`` computes in eval mode, from the
same ``model.safetensors`` and ``tokenizer.json``, with three differences that only change speed:

* **No padding in the dense layers.** The tokens of a batch are packed into one ``[tokens, dim]`` matrix for
  every Linear / LayerNorm / GELU (about 95 % of the FLOPs for review-length texts), and spread into a padded
  ``[batch, heads, width, head_dim]`` layout only for attention. A length-mixed batch costs what its real
  tokens cost, not ``batch x longest``.
* **The last layer runs for the [CLS] token only.** The classifier reads nothing else, so after the last
  layer's keys and values the attention output, its projection and the feed-forward block are computed for
  one row per text (about 14 % of a 6-layer model's FLOPs).
* **One fused Q/K/V projection** per layer instead of three smaller matrix products.

The server runs it as a TorchScript graph (``compiled``): a forward pass runs in C++ and takes the GIL once,
instead of running Python between about 200 operations. A model worker then no longer queues behind the event
loop for the GIL mid-pass (5-6 ms per one-text pass at 200 requests/s of 95 % cached traffic), and Python's
per-operation overhead (15 % of a one-text int8 pass) is gone.

It also spares the server the import of transformers (about 3 s of start-up and 100+ MB of modules).
``load`` takes a checkpoint only when every tensor maps onto this module; anything else (other architectures,
``.bin`` weights, sinusoidal positions, missing tokenizer.json) returns the reason and the backend falls back
to transformers.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

ARCHITECTURE = "DistilBertForSequenceClassification"
_EPS = 1e-12  # DistilBERT's LayerNorm epsilon (hard-coded in transformers as well)
_IGNORED_KEYS = frozenset({"distilbert.embeddings.position_ids"})  # a buffer some old checkpoints saved


class _Layer(nn.Module):
    def __init__(self, dim: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attention_norm = nn.LayerNorm(dim, eps=_EPS)
        self.ffn_in = nn.Linear(dim, hidden)
        self.ffn_out = nn.Linear(hidden, dim)
        self.output_norm = nn.LayerNorm(dim, eps=_EPS)

    def forward(
        self,
        x: torch.Tensor,
        width: int,
        index: torch.Tensor,
        cls_rows: torch.Tensor,
        mask: torch.Tensor | None,
        cls_only: bool,
    ) -> torch.Tensor:
        """One layer on packed rows; ``index``, ``cls_rows`` and ``mask`` place them in the padded grid."""
        dim = x.shape[1]
        b, w, h = cls_rows.shape[0], width, self.heads
        qkv = self.qkv(x)
        grid = qkv.new_zeros(b * w, 3 * dim).index_copy_(0, index, qkv)
        qkv_heads = grid.view(b, w, 3, h, dim // h).permute(2, 0, 3, 1, 4)  # [3, b, h, w, hd]
        q, k, v = qkv_heads[0], qkv_heads[1], qkv_heads[2]
        if cls_only:
            q = q[:, :, :1]
            residual = x.index_select(0, cls_rows)
        else:
            residual = x
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [b, h, q_len, hd]
        attended = attended.transpose(1, 2).reshape(-1, dim)
        if not cls_only:
            attended = attended.index_select(0, index)
        hidden = self.attention_norm(self.out(attended) + residual)
        out: torch.Tensor = self.output_norm(self.ffn_out(F.gelu(self.ffn_in(hidden))) + hidden)
        return out


class PackedDistilBert(nn.Module):
    """DistilBERT + its sequence-classification head, run on packed token rows (eval only).

    Written in the subset of Python TorchScript compiles (``compiled``); it also runs as a plain module.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        dim, labels = int(config["dim"]), len(config["id2label"])
        self.word_embeddings = nn.Embedding(int(config["vocab_size"]), dim)
        self.position_embeddings = nn.Embedding(int(config["max_position_embeddings"]), dim)
        self.embedding_norm = nn.LayerNorm(dim, eps=_EPS)
        hidden, heads = int(config["hidden_dim"]), int(config["n_heads"])
        self.layers = nn.ModuleList(_Layer(dim, hidden, heads) for _ in range(int(config["n_layers"])))
        self.pre_classifier = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[texts, labels]``: ``ids`` holds every text's token ids one after the other (each text
        starting with [CLS]), ``lengths`` each text's token count."""
        batch, width = lengths.shape[0], int(lengths.max())
        # Where each real token sits in the padded [batch, width] grid: flat positions b * width + p.
        valid = torch.arange(width).expand(batch, width) < lengths.unsqueeze(1)
        index = valid.flatten().nonzero().squeeze(1)
        cls_rows = torch.cumsum(lengths, 0) - lengths  # packed row of each text's first token
        mask: torch.Tensor | None = None  # True = a real key; no mask when no text is padded
        if int(lengths.min()) != width:
            mask = valid.view(batch, 1, 1, width)
        positions = index.remainder(width)  # each token's place in its own text
        x = self.embedding_norm(self.word_embeddings(ids) + self.position_embeddings(positions))
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, width, index, cls_rows, mask, i == last)
        logits: torch.Tensor = self.classifier(F.relu(self.pre_classifier(x)))
        return logits


def as_tensors(batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of unpadded id lists as the model's inputs: the ids one after the other, and the lengths."""
    ids = torch.tensor([i for seq in batch for i in seq], dtype=torch.long)
    return ids, torch.tensor([len(seq) for seq in batch], dtype=torch.long)


def compiled(model: PackedDistilBert) -> Callable[[Sequence[Sequence[int]]], torch.Tensor]:
    """The model (float or int8-quantized, in its final form) as a TorchScript graph: id lists -> logits.

    The graph runs on TorchScript's plain interpreter (no profiling or re-optimization on new shapes, so no
    slow first call per batch shape); it gives the same logits as the module, bit for bit.
    """
    scripted: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript for torch.compile/torch.export; neither runs a graph without the
            # GIL and without a C++ compiler at start-up, which is what the server needs.
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(model)
    except Exception as exc:  # a torch or Python without TorchScript: same answers, slower and GIL-bound
        log.warning(
            "Running the packed model without TorchScript (%s: %s): it holds the GIL between operations",
            type(exc).__name__,
            exc,
        )
        scripted = model

    def forward(batch: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, lengths = as_tensors(batch)
        # A documented torch.jit API that torch.jit leaves out of its __all__ (the setting is per thread).
        with torch.jit.optimized_execution(False):  # type: ignore[attr-defined]
            logits: torch.Tensor = scripted(ids, lengths)
        return logits

    return forward


def _transformers_names(layers: int) -> dict[str, list[str]]:
    """Our parameter name -> the checkpoint tensors it is made of (concatenated along dim 0)."""
    names: dict[str, list[str]] = {
        "word_embeddings.weight": ["distilbert.embeddings.word_embeddings.weight"],
        "position_embeddings.weight": ["distilbert.embeddings.position_embeddings.weight"],
    }
    for part in ("weight", "bias"):
        names[f"embedding_norm.{part}"] = [f"distilbert.embeddings.LayerNorm.{part}"]
        names[f"pre_classifier.{part}"] = [f"pre_classifier.{part}"]
        names[f"classifier.{part}"] = [f"classifier.{part}"]
        for i in range(layers):
            src, dst = f"distilbert.transformer.layer.{i}", f"layers.{i}"
            names[f"{dst}.qkv.{part}"] = [f"{src}.attention.{p}_lin.{part}" for p in "qkv"]
            for ours, theirs in (
                ("out", "attention.out_lin"),
                ("attention_norm", "sa_layer_norm"),
                ("ffn_in", "ffn.lin1"),
                ("ffn_out", "ffn.lin2"),
                ("output_norm", "output_layer_norm"),
            ):
                names[f"{dst}.{ours}.{part}"] = [f"{src}.{theirs}.{part}"]
    return names


def unsupported(config: dict[str, Any]) -> str | None:
    """Why this config cannot run packed, or None when it can."""
    if ARCHITECTURE not in (config.get("architectures") or []) or config.get("model_type") != "distilbert":
        return f"architecture {config.get('architectures')} is not {ARCHITECTURE}"
    if config.get("activation", "gelu") != "gelu":
        return f"activation {config.get('activation')!r} is not gelu"
    if config.get("sinusoidal_pos_embds"):
        return "sinusoidal position embeddings"
    if config.get("problem_type") not in (None, "single_label_classification"):
        return f"problem_type {config.get('problem_type')!r}"
    if int(config["dim"]) % int(config["n_heads"]):
        return "dim is not a multiple of n_heads"
    if len(config.get("id2label") or {}) < 2:
        return "id2label names fewer than 2 labels"
    return None


def load(model_dir: Path) -> tuple[PackedDistilBert, dict[str, Any]] | str:
    """The packed model (eval mode, float32) and its config, or the reason it cannot be used."""
    from safetensors import safe_open

    weights, config_file = model_dir / "model.safetensors", model_dir / "config.json"
    if not weights.is_file():
        return "no single model.safetensors file"
    try:
        config = json.loads(config_file.read_text())
        reason = unsupported(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"config.json: {type(exc).__name__}: {exc}"
    if reason:
        return reason
    try:
        model = PackedDistilBert(config)
        names = _transformers_names(int(config["n_layers"]))
        params = dict(model.named_parameters())
        with safe_open(str(weights), framework="pt") as f:
            available = set(f.keys())
            wanted = {src for sources in names.values() for src in sources}
            if wanted - available or available - wanted - _IGNORED_KEYS:
                missing, extra = sorted(wanted - available), sorted(available - wanted - _IGNORED_KEYS)
                return f"tensors do not match DistilBERT (missing {missing[:3]}, unexpected {extra[:3]})"
            with torch.no_grad():
                for ours, sources in names.items():
                    tensor = torch.cat([f.get_tensor(src) for src in sources], dim=0)
                    expected = tuple(params[ours].shape)
                    if tuple(tensor.shape) != expected:
                        return f"{sources[0]} has shape {tuple(tensor.shape)}, expected {expected}"
                    params[ours].copy_(tensor)
    except Exception as exc:  # a config value that builds no model; SafetensorError, OSError, ...
        return f"cannot map model.safetensors onto the packed model: {type(exc).__name__}: {exc}"
    return model.eval(), config
