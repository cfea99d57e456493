"""A tiny PreTrainedModel built from its config: an MLP classifier or regressor (about a thousand weights)."""

from __future__ import annotations

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyConfig(PretrainedConfig):
    model_type = "tiny_mlp"

    def __init__(self, n_in: int = 16, hidden: int = 32, n_out: int = 8, problem: str = "classification", **kwargs):
        super().__init__(**kwargs)
        self.n_in, self.hidden, self.n_out, self.problem = n_in, hidden, n_out, problem


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(config.n_in, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.n_out))
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.reset_parameters()

    def forward(self, x, labels=None):
        logits = self.net(x)
        loss = None
        if labels is not None:
            if self.config.problem == "regression":
                loss = nn.functional.mse_loss(logits, labels)
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}
