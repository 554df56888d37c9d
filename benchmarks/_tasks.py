"""The data and float model every accuracy benchmark starts from, prepared one way.

``load(dataset, config)`` and ``train_float(data, dataset, config)`` read ``fashion_train``,
``fashion_test``, ``fp_epochs`` and ``batch_size`` from the benchmark's config.
"""

from __future__ import annotations

FP_EPOCHS = {"fashion_mnist": 5, "imu_watch": 30}


def say(text: str) -> None:
    print(text, flush=True)


def load(dataset: str, config):
    from tfmot_edgeplus.datasets import classification_task

    if dataset == "fashion_mnist":
        return classification_task(dataset, config.fashion_train, config.fashion_test, seed=0)
    return classification_task(dataset)


def train_float(data, dataset: str, config):
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.models import compile_classifier, reference_model

    tf.keras.utils.set_random_seed(0)
    epochs = (config.fp_epochs or FP_EPOCHS)[dataset]
    model = compile_classifier(reference_model(data.input_shape, data.num_classes))
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=config.batch_size, verbose=0)
    return model
