"""The pooled-head split that every network of the zoo has."""

from __future__ import annotations


class PooledHead:
    """``forward(x) = forward_head(forward_features(x))``, for a network whose logits
    are one linear layer over pooled features.

    A subclass (listed before ``nn.Module``) defines ``forward_features`` (``(N, 3, T,
    H, W)`` -> ``(N, D)``) and names its classifier ``nn.Linear`` in ``classifier_attr``
    (``"fc"`` unless it says otherwise); the classifier's state-dict keys stay the
    published ones. ``har predict --features``, the exported ``features`` output and the
    temporal head read ``forward_features``; ``feature_dim`` is D.
    """

    classifier_attr = "fc"

    def forward_features(self, x):
        raise NotImplementedError(f"{type(self).__name__} defines no forward_features")

    def forward_head(self, features):
        """Pooled features ``(N, D)`` -> logits ``(N, num_classes)``."""
        return getattr(self, self.classifier_attr)(features)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    @property
    def feature_dim(self) -> int:
        return getattr(self, self.classifier_attr).in_features
