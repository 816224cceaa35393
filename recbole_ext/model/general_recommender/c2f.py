r"""C2F: coarse-to-fine lightweight meta-embedding (the fine stage on top of LEGCF).

Reference:
    Yang Wang, Haipeng Liu, Zeqian Yi, Biao Qian, Meng Wang. "Coarse-to-Fine Lightweight
    Meta-Embedding for ID-Based Recommendation." arXiv:2501.11870 (Sci. China Inf. Sci. 2025).

Reference code:
    https://github.com/htyjers/C2F-MetaEmbed (e7517d6), ``code/models/mat_approx.py`` and
    ``code/engine.py`` (``--sign_ft 0`` coarse, ``--sign_ft 1`` fine).

Stage ``coarse`` is :class:`~recbole_ext.model.general_recommender.legcf.LEGCF`. Stage
``fine`` starts from the best coarse weights, freezes the coarse codebook ``E_c`` and
``S1``, and adds a second codebook ``E_f ∈ R^{c_f×d}`` linked to the *anchors* (not to
the entities) by a sparse ``S2 ∈ R^{c×c_f}`` with ``ft`` non-zeros per row:

.. math::

    \hat E_f = \operatorname{sign}(E_f) \odot \operatorname{relu}(|E_f| - \tau), \qquad
    \tilde E_c = g\, S_2 \hat E_f + (1 - g)\, E_c,

    X^0 = [\tanh(S_1 E_c);\ \tilde E_c;\ \tanh(\hat E_f)], \qquad
    G = \operatorname{symnorm}\begin{bmatrix} \hat A & S_1 & 0 \\ S_1^\top & 0 & S_2 \\
                                              0 & S_2^\top & 0 \end{bmatrix}.

Every layer computes ``X = G X``, splits it into ``(H_u, H_c, H_f)`` and applies the
official weight-bridging correction, in the code's order::

    H_u ← H_u − S1 H_c;  H_c ← H_c − S2 H_f;  H_c ← g S2 H_f + (1 − g) H_c;  H_u ← H_u + S1 H_c

(algebraically ``H_u' = H_u − g S1 H_c − (1 − 2g) S1 S2 H_f`` and
``H_c' = (1 − g) H_c − (1 − 2g) S2 H_f``). ``H`` is the layer mean; score, BPR loss and
L2 term are LEGCF's (the ego rows ``tanh(S1 E_c)`` are frozen in this stage).

Initialisation of the fine stage: ``E_f`` by ``SparsePCA(sparse_pca_components,
alpha=sparse_pca_alpha)`` on ``c_f`` coarse codebook rows drawn with replacement, each
row's components scattered into ``d`` dims at random sorted positions; ``S2 =
top-ft(softmax_row(S1ᵀ F))`` with ``F`` a METIS partition into ``c_f`` parts weighted
``fine_anchor_weight`` on the own part and the rest spread evenly. Once the fixed-``S2``
sub-stage stops improving, ``S2 ← top-ft(softmax_row(A1ᵀ A2))`` every epoch with
``A1 = H_ent pinv(H_c)`` and ``A2 = H_ent pinv(H_f)``; ``S1`` stays fixed.

Args (config keys, defaults in ``properties/model/C2F.yaml``): every key of
:class:`LEGCF` (they describe the coarse stage), and
    stage: the stages to run, ``[coarse, fine]`` (one command for both), ``[coarse]``
        or ``[fine]``; a string ``coarse,fine`` (CLI ``--stage=coarse,fine``) works too.
    init_checkpoint: the coarse checkpoint (LEGCF or C2F) a ``[fine]`` run starts from.
    n_fine_anchors: c_f, rows of the fine codebook.
    n_fine_compositions: ft, non-zeros per row of ``S2``.
    fine_anchor_weight: weight on the own part in the METIS matrix ``F``.
    sparse_pca_components: components of the SparsePCA initialisation (at most d).
    sparse_pca_alpha: sparsity penalty of the SparsePCA initialisation.
    soft_threshold: τ of the soft-thresholding activation.
    bridge_weight: g, the weight-bridging gate.
    fine_learning_rate: learning rate of ``E_f`` and the biases in the fine stage.

Usage::

    # both stages in one run (the fine stage starts from the best coarse checkpoint)
    python run_recbole_ext.py --model C2F --dataset gowalla --preset c2f-gowalla
    python run_recbole_ext.py --model C2F --dataset ml-100k --stage=coarse,fine --epochs=50
    # the fine stage alone, from a finished LEGCF (or C2F coarse) checkpoint
    python run_recbole_ext.py --model C2F --dataset ml-100k --stage=fine \
        --init_checkpoint=saved/LEGCF-ml-100k-<run>-coarse-update.pth

The results JSON has ``memory`` (:meth:`C2F.memory_report`: embedding parameters and bytes
next to a full-embedding LightGCN) and ``stages`` (checkpoint and best validation result
of every sub-stage).

Deviations from the official code (besides LEGCF's):
    - One command can run both stages (``stage: [coarse, fine]``); the fine stage then
      starts, like the official ``--init_path_ft`` run, from the best checkpoint of the
      coarse assignment-update sub-stage (of the fixed one if no update sub-stage was
      validated). Both stages share ``train_batch_size`` (the official runs use 8192
      and 32768).
    - The coarse stage leaves the fine nodes out of the graph instead of keeping them as
      isolated nodes with zero features (identical propagation).
    - ``S1ᵀ F`` and ``A1ᵀ A2`` are computed in closed form from sparse factors and a
      ``d × d`` Gram matrix instead of dense ``N × c_f`` / ``N × c`` matrices.
    - The frozen coarse codebook has ``requires_grad=False`` in the fine stage (the
      official code keeps it in an Adam group with learning rate 0: same values).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.model.general_recommender._meta_embedding import (
    assignment_matrix,
    fine_assignment_from_partition,
    fine_assignment_update,
    metis_partition,
    soft_threshold,
    sparse_pca_codebook,
)
from recbole_ext.model.general_recommender.legcf import LEGCF, _sparse_part
from recbole_ext.params import ParamSpec, Rule, custom, integer, real

STAGES = ("coarse", "fine")
# Keys a LEGCF checkpoint shares with C2F; a [fine] run takes exactly these from it.
COARSE_STATE_KEYS = ("codebook", "bias", "assign_index", "assign_weight")


def parse_stages(value) -> list[str]:
    """``"coarse,fine"`` or ``["coarse", "fine"]`` -> ``["coarse", "fine"]``."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _valid_stages(stages: list) -> bool:
    return stages in (["coarse"], ["fine"], ["coarse", "fine"])


class C2F(LEGCF):
    """Coarse-to-fine meta-embedding: LEGCF plus a soft-thresholded fine codebook bridged to the anchors."""

    PARAMS = LEGCF.PARAMS | ParamSpec(
        params={
            "stage": custom("one of [coarse], [fine], [coarse, fine] (a list or 'coarse,fine')",
                            lambda v: _valid_stages(parse_stages(v))),
            "n_fine_anchors": integer(1),
            "n_fine_compositions": integer(1),
            "fine_anchor_weight": real(0, 1, low_open=True),
            "sparse_pca_components": integer(1),
            "sparse_pca_alpha": real(0),
            "soft_threshold": real(0),
            "bridge_weight": real(0, 1),
            "fine_learning_rate": real(0),
        },
        rules=(
            Rule(("anchors_in_graph",), lambda inside: inside,
                 "the 'anchors_in_graph' parameter of C2F must be True: the fine anchors reach the "
                 "entities only through the expanded graph"),
            Rule(("stage", "init_checkpoint"), lambda stage, path: parse_stages(stage)[0] != "fine" or bool(path),
                 "the 'init_checkpoint' parameter of C2F must name a coarse checkpoint (LEGCF or C2F) "
                 "when 'stage' is [fine]. Got None instead"),
            Rule(("n_fine_compositions", "n_fine_anchors"), lambda t, c: t <= c,
                 "n_fine_compositions = {n_fine_compositions} must be at most n_fine_anchors = {n_fine_anchors}"),
        ),
    )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # parameters (checked with LEGCF's against C2F.PARAMS)
        self.stages = tuple(parse_stages(config["stage"]))
        self.init_checkpoint = config["init_checkpoint"]
        self.n_fine_anchors = config["n_fine_anchors"]
        self.n_fine_compositions = config["n_fine_compositions"]
        self.fine_anchor_weight = float(config["fine_anchor_weight"])
        self.sparse_pca_components = config["sparse_pca_components"]
        self.sparse_pca_alpha = float(config["sparse_pca_alpha"])
        self.soft_threshold = float(config["soft_threshold"])
        self.bridge_weight = float(config["bridge_weight"])
        self.fine_learning_rate = float(config["fine_learning_rate"])

        # layers: the fine codebook is initialised when the fine stage starts
        self.fine_codebook = nn.Parameter(torch.zeros(self.n_fine_anchors, self.embedding_size))
        if self.clip_grad_value > 0:
            self.fine_codebook.register_hook(self._clip_gradient)

        # S2 and the stage flag are buffers, so a fine checkpoint restores the fine model
        self.register_buffer("fine_index", torch.zeros(self.n_anchors, self.n_fine_compositions,
                                                        dtype=torch.long))
        self.register_buffer("fine_weight", torch.zeros(self.n_anchors, self.n_fine_compositions))
        self.register_buffer("fine_active", torch.tensor(False))
        self.fine_codebook.requires_grad_(False)

        # caches: sparse S2, built on first use after a change
        self._fine_assignment: torch.Tensor | None = None

    @property
    def is_fine(self) -> bool:
        return bool(self.fine_active)

    def after_state_change(self) -> None:
        super().after_state_change()
        self._fine_assignment = None
        # The coarse codebook is frozen exactly when the fine part is active (also after a load).
        if hasattr(self, "fine_active"):
            self.codebook.requires_grad_(not self.is_fine)
            self.fine_codebook.requires_grad_(self.is_fine)

    # ----------------------------------------------------------------------- graph
    @property
    def n_nodes(self) -> int:
        return self.n_entities + self.n_anchors + (self.n_fine_anchors if self.is_fine else 0)

    def graph_blocks(self) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
        blocks = super().graph_blocks()
        if self.is_fine:
            anchors = self.n_entities
            blocks.append((anchors, anchors + self.n_anchors, self.fine_index, self.fine_weight))
        return blocks

    def fine_assignment(self) -> torch.Tensor:
        """``S2`` as a sparse ``[c, c_f]`` COO matrix, built on first use after a change."""
        if self._fine_assignment is None:
            self._fine_assignment = assignment_matrix(self.fine_index, self.fine_weight,
                                                      self.n_fine_anchors)
        return self._fine_assignment

    def sparse_fine_codebook(self) -> torch.Tensor:
        """``Ê_f``: the soft-thresholded fine codebook (exact zeros below τ) -> ``[c_f, d]``."""
        return soft_threshold(self.fine_codebook, self.soft_threshold)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_fine:
            return super().propagate()
        g = self.bridge_weight
        n, c = self.n_entities, self.n_anchors
        s1, s2 = self.assignment(), self.fine_assignment()
        fine = self.sparse_fine_codebook()
        ego = self.ego_embeddings()  # entity rows use the un-bridged coarse codebook
        bridged = g * torch.sparse.mm(s2, fine) + (1 - g) * self.codebook
        x = torch.cat([ego, bridged, torch.tanh(fine)])  # [N + c + c_f, d]
        graph = self.graph()
        layers = [x]
        for _ in range(self.n_layers):
            x = torch.sparse.mm(graph, x)
            h_u, h_c, h_f = x[:n], x[n:n + c], x[n + c:]
            # code order: h_c1 = h_c - S2 h_f, h_c2 = g S2 h_f + (1 - g) h_c1,
            # h_u' = (h_u - S1 h_c) + S1 h_c2 = h_u + S1 (h_c2 - h_c)
            s2_hf = torch.sparse.mm(s2, h_f)
            h_c_new = g * s2_hf + (1 - g) * (h_c - s2_hf)
            h_u = h_u + torch.sparse.mm(s1, h_c_new - h_c)
            x = torch.cat([h_u, h_c_new, h_f])
            layers.append(x)
        return ego, torch.stack(layers).mean(dim=0)

    @torch.no_grad()
    def update_assignment(self) -> None:
        """Coarse stage: LEGCF's ``S`` update. Fine stage: ``S2 ← top-ft(softmax_row(A1ᵀ A2))``."""
        if not self.is_fine:
            super().update_assignment()
            return
        _, h = self.propagate()
        n, c = self.n_entities, self.n_anchors
        index, weight = fine_assignment_update(h[:n], h[n:n + c], h[n + c:], self.n_fine_compositions)
        self.fine_index.copy_(index)
        self.fine_weight.copy_(weight)
        self.after_state_change()

    # ----------------------------------------------------- stages and optimiser
    def optimizer_groups(self) -> list[dict]:
        return [{"name": "codebook", "params": [self.codebook]},
                {"name": "fine_codebook", "params": [self.fine_codebook]},
                {"name": "bias", "params": [self.bias]}]

    def stage_learning_rates(self, stage: str) -> dict[str, float]:
        if stage == "fine":
            return {"codebook": 0.0, "fine_codebook": self.fine_learning_rate,
                    "bias": self.fine_learning_rate}
        return {"codebook": self.learning_rate, "fine_codebook": 0.0, "bias": self.learning_rate}

    def load_coarse_checkpoint(self, path: str) -> None:
        """Take codebook, biases and ``S1`` from a LEGCF or C2F checkpoint (``init_checkpoint``).

        Raises:
            ValueError: the checkpoint's shapes do not match this model (other dataset,
                ``n_anchors``, ``n_compositions`` or ``embedding_size``).
        """
        state = load_checkpoint(path, "cpu")["state_dict"]
        missing = [key for key in COARSE_STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"init_checkpoint {path} is not a LEGCF/C2F checkpoint (missing {missing})")
        own = self.state_dict()
        for key in COARSE_STATE_KEYS:
            if state[key].shape != own[key].shape:
                raise ValueError(f"init_checkpoint {path}: '{key}' has shape {tuple(state[key].shape)}, "
                                 f"this model needs {tuple(own[key].shape)} (same dataset, "
                                 "n_anchors, n_compositions and embedding_size?)")
        with torch.no_grad():
            for key in COARSE_STATE_KEYS:
                getattr(self, key).copy_(state[key])
        self.after_state_change()

    def enter_stage(self, stage: str) -> None:
        """``fine``: initialise ``E_f`` (SparsePCA) and ``S2`` (METIS), freeze ``E_c`` and ``S1``."""
        super().enter_stage(stage)
        if stage != "fine":
            return
        rng = np.random.default_rng([self.seed, 1])
        codebook = sparse_pca_codebook(self.codebook.detach().cpu().numpy(), self.n_fine_anchors,
                                       self.sparse_pca_components, self.sparse_pca_alpha, rng)
        if self.assignment_init == "metis":
            partition = metis_partition(self.adjacency, self.n_fine_anchors, self.seed + 1)
        else:
            partition = rng.integers(0, self.n_fine_anchors, size=self.n_entities)
        index, weight = fine_assignment_from_partition(
            self.assign_index, self.assign_weight, partition, self.n_anchors,
            self.n_fine_anchors, self.fine_anchor_weight, self.n_fine_compositions)
        with torch.no_grad():
            self.fine_codebook.copy_(torch.from_numpy(codebook))
            self.fine_index.copy_(index)
            self.fine_weight.copy_(weight)
            self.fine_active.fill_(True)
        self.after_state_change()

    def stage_summary(self) -> str:
        if not self.is_fine:
            return super().stage_summary()
        used = int(torch.unique(self.fine_index).numel())
        nnz = int(torch.count_nonzero(self.sparse_fine_codebook()))
        return (f"{used}/{self.n_fine_anchors} fine anchors used by S2, "
                f"{nnz}/{self.fine_codebook.numel()} non-zeros in the soft-thresholded fine codebook")

    # ------------------------------------------------------------------- memory
    def memory_parts(self) -> dict[str, dict]:
        """LEGCF's parts plus, once the fine stage started, the sparse fine codebook and ``S2``.

        ``Ê_f`` counts its non-zeros (float32 value + int32 flat position each) and ``S2``
        its ``c·ft`` entries (float32 weight + int32 column index each).
        """
        parts = super().memory_parts()
        if self.is_fine:
            with torch.no_grad():
                nnz = int(torch.count_nonzero(self.sparse_fine_codebook()))
            parts["fine_codebook"] = _sparse_part(nnz)
            parts["fine_assignment"] = _sparse_part(self.n_anchors * self.n_fine_compositions)
        return parts

    def memory_report(self) -> dict:
        return dict(super().memory_report(), stage="fine" if self.is_fine else "coarse")
