"""Detection: pseudo-healthy synthesis for a subject, anomaly maps, clusters, derivatives and reports."""
