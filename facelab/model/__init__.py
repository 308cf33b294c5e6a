"""From crops to a model: the settings and the registry of model kinds (`model_config`), the
networks and the Codec interface (`models`), training and its background jobs, held-out
evaluation and the verdict beside the baselines, and the metrics they share.

Adding a model kind: `model_config.register_kind` (and a loader in `models` only for a new
weights format)."""
