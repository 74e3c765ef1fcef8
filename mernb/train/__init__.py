"""Training: one epoch loop for every method, LOSO / k-fold / holdout runners, metrics."""
