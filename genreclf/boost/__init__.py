"""The strongest model that trains offline: a forest + RBF-SVM ensemble on richer cover descriptors."""
