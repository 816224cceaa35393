"""Per-model config overrides for the model contract test (tests/test_model_contract.py).

Every model in ``recbole_ext.registry.PLUGIN_MODELS`` is tested; a model with no entry
here runs with its family's defaults (see ``FAMILY_DEFAULTS`` in the contract test).
Keep each entry small: the fixture dataset has 40 users and 60 items.
"""

MODEL_OVERRIDES: dict[str, dict] = {
    **{name: {  # explicit ratings on the fixture's side features (tiny sizes)
        "load_col": {"inter": ["user_id", "item_id", "rating"],
                     "user": ["user_id", "age", "gender", "occupation", "zip_code"],
                     "item": ["item_id", "title", "genre"]},
        "item_side_fields": ["title", "genre"], "encoder_layers": [16, 8],
        "prediction_layers": [8, 1], "embedding_size": 8, "metrics": ["RMSE", "MAE", "RatingPrecision"],
        "valid_metric": "RMSE"} for name in ("NRP", "NRPaSDAE", "NRPDHA", "ASDAE", "DHA", "BiasedMF")},
    "RNNCCE": {"embedding_size": 8, "hidden_size": 12, "cell": "gru"},
    **{name: {  # tiny codebooks; one negative per positive keeps an epoch well under a second
        "embedding_size": 8, "n_anchors": 8, "train_batch_size": 256,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                  "dynamic": False, "candidate_num": 0},
        **({"n_fine_anchors": 6, "n_fine_compositions": 2, "sparse_pca_components": 4}
           if name == "C2F" else {})} for name in ("LEGCF", "C2F")},
    "DLR2": {"embedding_size": 8, "embedding_init_dim": 8, "dlr2_channels": [4, 8],
             "dlr2_hidden_size": [16, 8]},  # LEPORID-initialised and frozen, as by default
    **{name: {  # pointwise on the fixture's 0/1 labels, RippleNet-style protocol; small tables
        "load_col": {"inter": ["user_id", "item_id", "label"], "kg": ["head_id", "relation_id", "tail_id"],
                     "link": ["item_id", "entity_id"]},
        "train_neg_sample_args": None, "metrics": ["AUC", "LogLoss", "ACC"], "valid_metric": "AUC",
        "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": None, "mode": "labeled"},
        "embedding_size": 8, "max_degree": 8, "hop_n_sample": "1,4", "n_eval": 4}
       for name in ("KNI", "NI")},
}
