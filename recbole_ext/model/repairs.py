"""Repairs of RecBole 1.2.1 model instances, applied to a built model by
:func:`recbole_ext.quick_start.build_model` (no RecBole class is patched).

RippleNet's cold users: RecBole's RippleNet builds ripple sets only for users with a
training interaction, and ``predict`` raises ``IndexError`` for any other user (a validation
or test user whose training rows are all negatives, on a labelled split). Those users get the
all-padding memories RecBole already uses for users without KG facts.
"""

from __future__ import annotations

import torch


def complete_recbole_model(model: torch.nn.Module) -> torch.nn.Module:
    """Fill what a built RecBole model leaves missing for some users; returns ``model``."""
    from recbole.model.knowledge_aware_recommender import RippleNet

    if isinstance(model, RippleNet):
        padding = torch.zeros(model.n_memory, dtype=torch.long, device=model.device)
        hops = [(padding, padding, padding)] * model.n_hop
        missing = [user for user in range(model.n_users) if user not in model.ripple_set]
        for user in missing:
            model.ripple_set[user] = list(hops)
        if missing:
            model.logger.info(f"RippleNet: {len(missing)} users without a training interaction get padding memories")
    return model
