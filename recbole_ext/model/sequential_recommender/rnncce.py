r"""RNNCCE: a GRU/LSTM next-item model trained with categorical cross-entropy, with an
optional weight-tied output layer and the tying "augmented loss".

References:
    Robin Devooght and Hugues Bersini. "Collaborative Filtering with Recurrent Neural
    Networks" / "Long and Short-Term Recommendations with Recurrent Neural Networks".
    arXiv:1608.07400; UMAP 2017. Code: https://github.com/rdevooght/sequence-based-recommendations
    Weight tying for this model: https://github.com/kwonmha/Improving-RNN-recommendation-model
    (TensorFlow, ``neural_networks/rnn_one_hot.py``), which follows Inan et al., "Tying Word
    Vectors and Word Classifiers: A Loss Framework for Language Modeling", ICLR 2017.

Model. Items ``x_1..x_t`` are embedded (``E``: ``[n_items, d_e]``), run through a GRU or
LSTM, and the last hidden state ``h_t`` (``d_h``) scores every item:

- untied (Devooght):  ``logits = W h_t + b``, ``W``: ``[n_items, d_h]`` free;
- tied (kwonmha):     ``logits = E z_t + b``, ``z_t = h_t`` if ``d_h == d_e`` else
  ``z_t = P h_t`` with a learnt projection ``P``: ``[d_e, d_h]``; ``b`` is a free bias.

Loss, for target item ``y`` (one-hot ``Y``)::

    L = CE(softmax(logits), y)
        + gamma * tau * KL( softmax(E e_y / tau) || softmax(E z_t / tau) )   # tying_loss: kl

The second term (tied output only) pulls the predicted distribution towards the items
whose embeddings are close to the target's. ``tying_target_grad`` chooses whether the
target distribution ``softmax(E e_y / tau)`` is a constant (False, like the Theano port,
which builds it from a snapshot of ``E``) or lets gradients flow into ``E`` (True, like
kwonmha's TensorFlow graph).

Deviations from the reference code:

- Losses are averaged over the batch (RecBole convention); the TF code sums CE and KL
  over the batch. With Adam this only rescales the effective learning rate slightly
  (Adam is invariant to a constant loss scale up to ``eps``).
- The KL term is computed over the real items only (column 0 is RecBole's padding
  item, absent in the reference code) and with exact ``log_softmax`` instead of clipping
  the target at 1e-7.
- A projection ``hidden -> embedding`` is added when the sizes differ; the reference
  code requires ``hidden_size == embedding_size`` (the seed's "dim" rows use equal sizes).
- Training samples: with RecBole's sequential datasets every prefix of a training
  sequence (up to ``MAX_ITEM_LIST_LENGTH`` items) is one sample per epoch; Devooght's
  trainer instead draws random cut points per sequence. Dropout is applied to the input
  embeddings (and between stacked layers), as in RecBole's GRU4Rec.
- The projection (tied, sizes differ) is applied to the last hidden state only, not to
  every time step as in RecBole's GRU4Rec. Padded steps are still run: on CPU, packed
  sequences take a slower, non-fused RNN path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn

from recbole_ext.params import ParamSpec, Rule, boolean, choice, integer, real


class RNNCCE(SequentialRecommender):
    """GRU/LSTM next-item recommender with untied or weight-tied softmax output.

    Config keys (defaults in ``properties/model/RNNCCE.yaml``): ``cell``,
    ``embedding_size``, ``hidden_size``, ``num_layers``, ``dropout_prob``, ``output``,
    ``tying_loss``, ``tying_temperature``, ``tying_gamma``, ``tying_target_grad``,
    ``exclude_viewed``.
    """

    input_type = InputType.POINTWISE
    PARAMS = ParamSpec(
        params={
            "cell": choice("gru", "lstm"),
            "embedding_size": integer(1),
            "hidden_size": integer(1),
            "num_layers": integer(1),
            "dropout_prob": real(0, 1, high_open=True),
            "output": choice("untied", "tied"),
            "tying_loss": choice("none", "kl"),
            "tying_temperature": real(0, low_open=True),
            "tying_gamma": real(0),
            "tying_target_grad": boolean(),
            "exclude_viewed": boolean(),
        },
        rules=(Rule(("tying_loss", "output"), lambda loss, output: loss == "none" or output == "tied",
                    "tying_loss '{tying_loss}' needs output: tied (the KL term compares the tied output "
                    "with the item embeddings); use tying_loss: none with output: {output}"),),
        # the augmented loss is the point of tying: on with a tied output unless set
        derived={"tying_loss": lambda config: "kl" if config["output"] == "tied" else "none"},
    )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # parameters (a recbole-ext Config has checked them already; a hand-built config has not)
        self.PARAMS.apply(type(self).__name__, config)
        self.cell = config["cell"]
        self.embedding_size = config["embedding_size"]
        self.hidden_size = config["hidden_size"]
        self.num_layers = config["num_layers"]
        self.dropout_prob = config["dropout_prob"]
        self.output = config["output"]
        self.tying_loss = config["tying_loss"]
        self.tying_temperature = config["tying_temperature"]
        self.tying_gamma = config["tying_gamma"]
        self.tying_target_grad = config["tying_target_grad"]
        self.exclude_viewed = config["exclude_viewed"]

        # layers
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(self.dropout_prob)
        rnn_class = nn.GRU if self.cell == "gru" else nn.LSTM
        self.rnn = rnn_class(self.embedding_size, self.hidden_size, num_layers=self.num_layers,
                             batch_first=True,
                             dropout=self.dropout_prob if self.num_layers > 1 else 0.0)
        if self.output == "untied":
            self.output_layer = nn.Linear(self.hidden_size, self.n_items)
        else:
            # Only the bias is a new parameter; the weight is item_embedding.weight itself.
            self.projection = (nn.Linear(self.hidden_size, self.embedding_size)
                               if self.hidden_size != self.embedding_size else nn.Identity())
            self.output_bias = nn.Parameter(torch.zeros(self.n_items))

        # init
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            nn.init.xavier_normal_(module.weight)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def output_weight(self) -> torch.Tensor:
        """The output matrix ``[n_items, d]``; for ``tied`` it *is* the item embedding."""
        if self.output == "tied":
            return self.item_embedding.weight
        return self.output_layer.weight

    def output_bias_vector(self) -> torch.Tensor:
        return self.output_bias if self.output == "tied" else self.output_layer.bias

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Last hidden state of each sequence, projected to the output space.

        Args:
            item_seq: ``[B, L]`` item ids, right-padded with 0.
            item_seq_len: ``[B]`` number of real items (>= 1).

        Returns:
            ``[B, d_h]`` (untied) or ``[B, d_e]`` (tied).
        """
        emb = self.emb_dropout(self.item_embedding(item_seq))  # [B, L, d_e]
        states, _ = self.rnn(emb)  # [B, L, d_h]
        # Right padding never reaches the state at position len-1, so it is the last real one.
        hidden = self.gather_indexes(states, item_seq_len - 1)  # [B, d_h]
        if self.output == "tied":
            hidden = self.projection(hidden)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` scores ``W h + b`` (tied: ``W = E``)."""
        return F.linear(hidden, self.output_weight(), self.output_bias_vector())

    def tying_kl(self, hidden: torch.Tensor, target: torch.Tensor,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        """Batch mean of ``KL(softmax(E e_y / tau) || softmax(E z / tau))`` over real items.

        Args:
            hidden: ``[B, d_e]`` projected hidden states ``z``.
            target: ``[B]`` target item ids ``y``.
            scores: ``z E^T`` (``[B, n_items]``, without bias) if already computed.
        """
        table = self.item_embedding.weight[1:]  # [n_items - 1, d_e]; drop the padding row
        tau = self.tying_temperature
        target_table = table if self.tying_target_grad else table.detach()
        target_emb = target_table[target - 1]  # [B, d_e]
        log_target = F.log_softmax(target_emb @ target_table.t() / tau, dim=-1)
        pred_scores = hidden @ table.t() if scores is None else scores[:, 1:]
        log_pred = F.log_softmax(pred_scores / tau, dim=-1)
        return F.kl_div(log_pred, log_target, reduction="batchmean", log_target=True)

    def calculate_loss(self, interaction) -> torch.Tensor:
        hidden = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        target = interaction[self.POS_ITEM_ID]
        scores = hidden @ self.output_weight().t()  # [B, n_items]
        loss = F.cross_entropy(scores + self.output_bias_vector(), target)
        if self.tying_loss == "kl":
            # The KL's prediction side reuses z E^T from the output layer (no second matmul).
            kl = self.tying_kl(hidden, target, scores)
            loss = loss + self.tying_gamma * self.tying_temperature * kl
        return loss

    def predict(self, interaction) -> torch.Tensor:
        hidden = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item = interaction[self.ITEM_ID]
        weight = self.output_weight()[item]  # [B, d]
        return (hidden * weight).sum(dim=-1) + self.output_bias_vector()[item]

    def full_sort_predict(self, interaction) -> torch.Tensor:
        item_seq = interaction[self.ITEM_SEQ]
        scores = self.logits(self.forward(item_seq, interaction[self.ITEM_SEQ_LEN]))  # [B, n_items]
        if self.exclude_viewed:
            # Devooght's evaluation never recommends an item the user has already seen.
            scores = scores.scatter(1, item_seq, float("-inf"))
        return scores
