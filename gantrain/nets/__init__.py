"""Networks: plain ``nn.Module``s registered in ``NETWORKS``; none knows which GAN trains it."""
