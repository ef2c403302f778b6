"""Training: blur synthesis from sharp video and stills, datasets, losses, the training loop
(one device or torch.distributed), and evaluation. Builds on the numeric core; no napari/Qt."""
