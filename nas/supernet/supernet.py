"""The supernet: a pretrained transformer whose width, depth and bit-widths are sampled.

Per label it holds architecture logits (separate from the weights). A forward
pass takes a mapping ``{label: weights over options}`` — a Gumbel-softmax
sample (:meth:`Supernet.sample`), the soft probabilities or a one-hot
architecture (:meth:`Supernet.one_hot`) — and turns it into a
:class:`~nas.models.transformer.ModelControl`:

* width: the mixture of prefix masks ``Σ_k w_k·[1]*h_k+[0]*(H-h_k)`` over heads
  (applied to each head's output) and over FFN neurons (applied to the
  activations);
* depth: a gated residual ``y = w_keep·block(x) + (1-w_keep)·x``;
* bits: the mixture of fake-quantized weights ``Σ_b w_b·fq_b(W)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nas.models.sources import LoadedModel, load_model
from nas.models.transformer import LayerControl, ModelControl, TransformerModel
from nas.spaces.choice import layer_label
from nas.spaces.space import Arch, SearchSpace
from nas.supernet.gumbel import gumbel_softmax
from nas.supernet.importance import CALIBRATION_TEXT, reorder_by_importance
from nas.quant import mixed_weight

Weights = Mapping[str, Tensor]


def _key(label: str) -> str:
    return label.replace(".", "__")


def calibration_batch(loaded: LoadedModel, *, seed: int = 0, max_length: int = 64) -> tuple[Tensor, Tensor]:
    """Built-in calibration sentences for a model with a tokenizer, else seeded random tokens."""
    if loaded.model_dir is not None and (loaded.model_dir / "tokenizer.json").is_file():
        from nas.models.tokenizer import Tokenizer

        return Tokenizer(loaded.model_dir, max_length)(CALIBRATION_TEXT)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, loaded.dims.vocab_size, (8, 16), generator=g)
    return ids, torch.ones_like(ids)


class Supernet(nn.Module):
    """Gumbel-softmax supernet over ``space`` (see module docstring).

    Build one with :meth:`Supernet.build`; the constructor takes a model whose
    heads and neurons are already in importance order.
    """

    def __init__(self, space: SearchSpace, model: TransformerModel) -> None:
        super().__init__()
        if model.dims != space.dims:
            raise ValueError("model dims differ from the space's dims")
        self.space = space
        self.model = model
        self.arch_logits = nn.ParameterDict({_key(c.label): nn.Parameter(torch.zeros(len(c.options))) for c in space})
        dims = space.dims
        for c in space:
            if c.kind in ("heads", "ffn"):
                full = dims.num_heads if c.kind == "heads" else dims.intermediate
                masks = torch.zeros(len(c.options), full)
                for k, w in enumerate(c.options):
                    masks[k, :w] = 1.0
                self.register_buffer(f"_mask_{_key(c.label)}", masks, persistent=False)
        self.importance: dict = {}

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        *,
        loaded: LoadedModel | None = None,
        calibration: tuple[Tensor, Tensor] | None = None,
        reorder: bool = True,
    ) -> "Supernet":
        """Load the space's pretrained model, order it by importance and wrap it.

        Args:
            space: the search space.
            loaded: the model, if already loaded (else ``load_model(space.model)``).
            calibration: ``(input_ids, attention_mask)`` for importance; default:
                :func:`calibration_batch`.
            reorder: order heads and neurons by importance (see
                :mod:`nas.supernet.importance`).
        """
        loaded = loaded or load_model(space.model)
        net = cls.from_state(space, loaded.state)
        if reorder:
            ids, mask = calibration if calibration is not None else calibration_batch(loaded)
            net.importance = reorder_by_importance(net.model, ids, mask)
        return net

    @classmethod
    def from_state(cls, space: SearchSpace, state: Mapping[str, Tensor], *, importance: dict | None = None) -> "Supernet":
        """A supernet over ``space`` whose model loads (copies) ``state`` as it is: no reordering.

        ``state`` is in importance order when it comes from a built supernet (``net.model.state_dict()``, with its
        ``importance``) or a shared supernet's weights.
        """
        model = TransformerModel(space.dims)
        model.load_state_dict(state)
        model.eval()
        net = cls(space, model)
        net.importance = dict(importance or {})
        return net

    # -- parameters ---------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch_logits.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def logits(self, label: str) -> nn.Parameter:
        return self.arch_logits[_key(label)]

    # -- distributions --------------------------------------------------------
    def probs(self) -> dict[str, Tensor]:
        """Softmax of the architecture logits, per label."""
        return {c.label: torch.softmax(self.logits(c.label), -1) for c in self.space}

    def sample(self, tau: float, *, hard: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One Gumbel-softmax sample per label (straight-through one-hot when ``hard``)."""
        return {c.label: gumbel_softmax(self.logits(c.label), tau, hard=hard, generator=generator) for c in self.space}

    def one_hot(self, arch: Mapping[str, int]) -> dict[str, Tensor]:
        """Constant one-hot weights selecting ``arch``."""
        arch = self.space.validate(arch)
        out = {}
        for c in self.space:
            w = torch.zeros(len(c.options))
            w[c.index(arch[c.label])] = 1.0
            out[c.label] = w
        return out

    @torch.no_grad()
    def favour(self, arch: Mapping[str, int], strength: float) -> None:
        """Add ``strength`` to the logit of ``arch``'s option of every label: a prior towards ``arch``.

        ``favour(space.full(), s)`` starts a search near the pretrained model: with ``n`` options a
        label's full option has probability ``e^s / (e^s + n − 1)`` (0.79 at s = 2, 3 options).
        """
        arch = self.space.validate(arch)
        if not strength >= 0:
            raise ValueError(f"strength: must be >= 0, got {strength}")
        for c in self.space:
            self.logits(c.label)[c.index(arch[c.label])] += strength

    def export(self) -> Arch:
        """The argmax architecture ``{label: choice}``, made valid (keeps ≥ 1 layer)."""
        arch = {c.label: c.options[int(torch.argmax(self.logits(c.label)))] for c in self.space}
        if not self.space.kept_layers(arch):
            best = max(
                (c for c in self.space if c.kind == "keep" and 1 in c.options),
                key=lambda c: float(torch.softmax(self.logits(c.label), -1)[c.index(1)]),
            )
            arch[best.label] = 1
        return arch

    # -- forward --------------------------------------------------------------
    def control(self, weights: Weights) -> ModelControl:
        """Turn per-label option weights into the model's per-forward control."""
        space = self.space
        missing = [c.label for c in space if c.label not in weights]
        if missing:
            raise KeyError(f"{missing[0]}: no weights given for this label")

        def mask(label: str) -> Tensor | None:
            if len(space[label].options) == 1 and label in space:
                return None if space[label].options[0] == self._full(label) else getattr(self, f"_mask_{_key(label)}")[0]
            return weights[label] @ getattr(self, f"_mask_{_key(label)}")

        def qfn(label: str):
            opts = space[label].options
            if opts == (32,):
                return None
            w = weights[label]
            return lambda W: mixed_weight(W, opts, w)

        layers = []
        for i in range(space.dims.num_layers):
            keep = space[layer_label(i, "keep")]
            gate = None if keep.options == (1,) else weights[keep.label][keep.index(1)] if 1 in keep.options else torch.tensor(0.0)
            layers.append(
                LayerControl(
                    head_mask=mask(layer_label(i, "heads")),
                    neuron_mask=mask(layer_label(i, "ffn")),
                    gate=gate,
                    attn_weight=qfn(layer_label(i, "attn.bits")),
                    ffn_weight=qfn(layer_label(i, "ffn.bits")),
                )
            )
        return ModelControl(layers=layers, embed_weight=qfn("embed.bits"))

    def _full(self, label: str) -> int:
        return self.space.dims.num_heads if label.endswith(".heads") else self.space.dims.intermediate

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, weights: Weights | None = None) -> Tensor:
        """Last hidden state under ``weights`` (``None``: the uncompressed model)."""
        return self.model(input_ids, attention_mask, None if weights is None else self.control(weights))
