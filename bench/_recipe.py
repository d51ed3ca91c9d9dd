"""The CIFAR-10 recipe's data handling and regularisation as sqznet-train flags (no absl flags defined
here, so every bench script can import it). bench/cifar10_recipe.py exposes each as a flag of its
own; bench/dsd_cifar10.py and bench/design_space_sweeps.py use them as they are and set the
epochs and learning rate themselves."""

RECIPE_FLAGS = ["--image_size=32", "--preprocessing=cifar", "--augmentation=pad_crop_flip", "--batch_size=128",
                "--optimizer=sgd", "--lr_schedule=cosine", "--weight_decay=5e-4", "--label_smoothing=0.1",
                "--dropout=0.2", "--histogram_freq=0", "--verbose=2"]
