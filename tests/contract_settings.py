"""Per-model config overrides for the model contract test (tests/test_model_contract.py).

Every model in ``recbole_ext.registry.PLUGIN_MODELS`` is tested; a model with no entry
here runs with its family's defaults (see ``FAMILY_DEFAULTS`` in the contract test).
Keep each entry small: the fixture dataset has 40 users and 60 items.
"""

MODEL_OVERRIDES: dict[str, dict] = {
    "RNNCCE": {"embedding_size": 8, "hidden_size": 12, "cell": "gru"},
}
