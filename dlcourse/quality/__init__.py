"""How good are generated images: Fréchet distances on a classifier's features, the classifier score, nearest
training images (memorisation), and the ``classifier`` family that trains the feature extractor.

- `metrics`: `frechet_distance`, `fid_from_features`, `classifier_score`, `image_quality`, `reference_quality`,
  `nearest_training_images`, and `InceptionFeatures` (the standard Inception FID for CIFAR-10).
- `family`: ``dlcourse train|eval classifier``: a small CNN on Fashion-MNIST (or MNIST) whose penultimate
  features give the Fréchet distance and whose predictions give the classifier score.
"""
