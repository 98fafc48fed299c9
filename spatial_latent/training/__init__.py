"""Training generators: the trainer (crops or whole images), data, discriminator and augmentation."""
