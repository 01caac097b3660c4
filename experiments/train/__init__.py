"""Training CIFAR-10 models with Flax and optax (issue 20): ``python -m
experiments.train --model cifar_vgg11_bn --data cifar10-train``.

``config.py`` holds the configs (plain dicts), ``input_pipeline.py`` the data and the
augmentation, ``train.py`` the train state, the jitted steps, checkpoints and the loop;
``__main__.py`` is the thin command line. See ``README.md`` for the recipe.
"""
