"""Learning-rate schedule: linear warm-up then cosine decay (Keras's own CosineDecay)."""
from __future__ import annotations

import keras


def warmup_cosine(lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: int = 1,
                  start_fraction: float = 0.1) -> keras.optimizers.schedules.CosineDecay:
    """Warm up linearly from ``lr * start_fraction`` to ``lr`` then decay to 0 by the last step.

    Warm-up is capped at half the run so short runs still decay.
    """
    total = max(1, int(steps_per_epoch) * int(epochs))
    warmup = min(int(steps_per_epoch) * int(warmup_epochs), total // 2)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * start_fraction,
        decay_steps=max(1, total - warmup),
        warmup_target=lr,
        warmup_steps=warmup,
    )


@keras.saving.register_keras_serializable(package="cxrlab")
class PerUpdate(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule`` counted in optimizer updates when gradients are accumulated.

    Keras evaluates a schedule at the raw batch counter even with
    ``gradient_accumulation_steps=k``; dividing by ``k`` makes k accumulated batches follow
    exactly the schedule of one k-times-bigger batch.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, steps: int):
        self.schedule = schedule
        self.steps = int(steps)

    def __call__(self, step):
        return self.schedule(keras.ops.floor_divide(step, self.steps))

    def get_config(self) -> dict:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "steps": self.steps}

    @classmethod
    def from_config(cls, config: dict) -> PerUpdate:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["steps"])
